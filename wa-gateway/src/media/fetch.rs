//! Downloads a job's media URL to a file, within the operator's limits: https only
//! (http when allowed), a bounded number of redirects, a time limit, a size limit,
//! and no connection to loopback, private or link-local addresses unless allowed, so
//! a job cannot make the gateway fetch from its own network. Every address a name
//! resolves to is checked before connecting, on each redirect too.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{StatusCode, Url, redirect};
use tokio::io::AsyncWriteExt as _;

use crate::config::MediaLimits;
use crate::error::{Error, Result, error_chain};

/// Downloads media: one client that keeps to the address rules, one for the
/// dispatcher's storage URLs, which are the operator's own configuration.
#[derive(Debug, Clone)]
pub struct Fetcher {
    guarded: reqwest::Client,
    storage: reqwest::Client,
    limits: MediaLimits,
}

/// A name or address the rules refuse, carried through the HTTP client's errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

impl Fetcher {
    pub fn new(limits: &MediaLimits) -> Result<Self> {
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .timeout(limits.download_timeout)
                .connect_timeout(
                    limits
                        .download_timeout
                        .min(std::time::Duration::from_secs(30)),
                )
                .user_agent(concat!("abtrack-notify/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Internal(format!("cannot build the media client: {e}")))
        };
        let rules = limits.clone();
        let max_redirects = limits.max_redirects;
        let guarded = build(
            reqwest::Client::builder()
                .dns_resolver(Arc::new(Guarded {
                    allow_private: limits.allow_private,
                }))
                .redirect(redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() > max_redirects {
                        return attempt.error(Refused(format!(
                            "the URL redirects more than {max_redirects} times"
                        )));
                    }
                    match check_url(attempt.url(), &rules) {
                        Ok(()) => attempt.follow(),
                        Err(why) => attempt.error(Refused(format!("a redirect {why}"))),
                    }
                })),
        )?;
        let storage = build(
            reqwest::Client::builder().redirect(redirect::Policy::limited(limits.max_redirects)),
        )?;
        Ok(Self {
            guarded,
            storage,
            limits: limits.clone(),
        })
    }

    /// Downloads `url` into `to`; answers the size.
    pub async fn download(&self, url: &str, token: Option<&str>, to: &Path) -> Result<u64> {
        let parsed = Url::parse(url)
            .map_err(|e| Error::BadMedia(format!("the media URL is not valid: {e}")))?;
        check_url(&parsed, &self.limits)
            .map_err(|why| Error::BadMedia(format!("the media URL {why}")))?;
        let mut request = self.guarded.get(parsed);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.fetch(request, "the media URL", to).await
    }

    /// Downloads a storage object the dispatcher located.
    pub async fn download_object(
        &self,
        name: &str,
        url: &str,
        token: &str,
        to: &Path,
    ) -> Result<u64> {
        let mut request = self.storage.get(url);
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        self.fetch(request, &format!("the storage object {name}"), to)
            .await
    }

    async fn fetch(&self, request: reqwest::RequestBuilder, what: &str, to: &Path) -> Result<u64> {
        let limit = self.limits.max_document_bytes;
        let timeout = self.limits.download_timeout;
        let work = async {
            let response = request.send().await.map_err(|e| transport_error(what, e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(status_error(what, status));
            }
            if let Some(length) = response.content_length()
                && length > limit
            {
                return Err(too_large(what, length, limit));
            }
            let mut file = tokio::fs::File::create(to).await?;
            let mut size = 0u64;
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| transport_error(what, e))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(too_large(what, size, limit));
                }
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            Ok(size)
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            Error::MediaUnavailable(format!(
                "{what} did not finish downloading within {} s",
                timeout.as_secs()
            ))
        })?
    }
}

fn too_large(what: &str, size: u64, limit: u64) -> Error {
    Error::BadMedia(format!(
        "{what} is too large: more than {} MiB (at least {size} bytes); the limit is WA_MEDIA_MAX_DOCUMENT_MB",
        limit >> 20
    ))
}

/// A refusing answer is the job's fault and final; a busy or broken server's is not.
fn status_error(what: &str, status: StatusCode) -> Error {
    let text = format!("{what} answered HTTP {}", status.as_u16());
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        Error::MediaUnavailable(text)
    } else {
        Error::BadMedia(text)
    }
}

/// An address rule's refusal is final; any other transport error may pass. The URL
/// is left out of the text: its query may carry a signature, and the text becomes
/// the job's error.
fn transport_error(what: &str, error: reqwest::Error) -> Error {
    let error = error.without_url();
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Error::BadMedia(format!("{what} refused: {refused}"));
        }
        source = e.source();
    }
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot be reached"
    } else {
        "failed"
    };
    Error::MediaUnavailable(format!("{what} {kind}: {}", error_chain(&error)))
}

/// Checks a URL's scheme and, for an address written in it, the address.
fn check_url(url: &Url, limits: &MediaLimits) -> std::result::Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if limits.allow_http => {}
        "http" => {
            return Err("uses http://; only https:// is fetched (WA_MEDIA_ALLOW_HTTP)".into());
        }
        other => return Err(format!("uses {other}://; only https:// is fetched")),
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err("names no host".into()),
    };
    if !limits.allow_private && !is_public(ip) {
        return Err(format!(
            "points at {ip}, a loopback, private or link-local address (WA_MEDIA_ALLOW_PRIVATE)"
        ));
    }
    Ok(())
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, broadcast, multicast or documentation space.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

/// Resolves names as the system does, then keeps only the addresses the rules allow.
#[derive(Debug)]
struct Guarded {
    allow_private: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Refused(format!(
                    "{host} resolves to {}, a loopback, private or link-local address (WA_MEDIA_ALLOW_PRIVATE)",
                    found[0].ip()
                )));
                return Err(err);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn schemes_and_literal_addresses_follow_the_rules() {
        let strict = MediaLimits::default();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(check_url(&url("https://example.org/a.pdf"), &strict).is_ok());
        assert!(check_url(&url("http://example.org/a.pdf"), &strict).is_err());
        assert!(check_url(&url("https://127.0.0.1/a"), &strict).is_err());
        assert!(check_url(&url("https://[::1]/a"), &strict).is_err());
        assert!(check_url(&url("ftp://example.org/a"), &strict).is_err());
        let open = MediaLimits {
            allow_http: true,
            allow_private: true,
            ..MediaLimits::default()
        };
        assert!(check_url(&url("http://127.0.0.1:8080/a"), &open).is_ok());
    }
}
