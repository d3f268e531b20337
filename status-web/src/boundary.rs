//! The browser boundary. status-web usually runs on the operator's own PC, next to
//! the web browser they read mail and browse with, so any page they open can send it
//! requests. This module decides, before routing and authentication, which requests
//! could only have come from some other site, and refuses them:
//! - a `Host` that is not one of the dashboard's own names (DNS rebinding);
//! - an `Origin` other than the dashboard's own (cross-site requests, forms and
//!   WebSockets, whatever their method);
//! - a `Sec-Fetch-Site` of `cross-site` or `same-site` on anything but a top-level
//!   page load (`<img>`, `<script>`, frames and other no-cors loads carry no `Origin`);
//! - an API `POST` without `Content-Type: application/json`, which a browser cannot
//!   send to another origin without a preflight, and no preflight is ever granted.
//!
//! Every answer also carries headers that keep the dashboard out of other pages'
//! frames and scripts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// The dashboard's own scripts and styles only; no frames, no other origins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Sent with every answer, refusals included.
const HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends
    // `Origin: null` with the dashboard's own form posts.
    ("referrer-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
];

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// A host name as a browser writes it in `Host` and `Origin`: lower-case, IPv6
/// addresses in brackets, and a port (the scheme's default when none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    name: String,
    port: u16,
}

impl HostPort {
    fn parse(text: &str, default_port: u16) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let (name, port) = split_port(&text)?;
        let port = match port {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        Some(Self {
            name: name.to_owned(),
            port,
        })
    }

    fn ip(&self) -> Option<IpAddr> {
        let bare = self
            .name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&self.name);
        bare.parse().ok()
    }
}

/// `name`, `name:port`, `[v6]` or `[v6]:port` into the name and the port text.
fn split_port(text: &str) -> Option<(&str, Option<&str>)> {
    let (name, port) = if let Some(inner) = text.strip_prefix('[') {
        let end = inner.find(']')?;
        inner[..end].parse::<std::net::Ipv6Addr>().ok()?;
        let (name, rest) = text.split_at(end + 2);
        match rest {
            "" => (name, None),
            _ => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        let (name, port) = match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid {
            return None;
        }
        (name, port)
    };
    port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .then_some((name, port))
}

/// A name the operator added (`STATUS_WEB_ALLOWED_HOSTS`): on any port, or on one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    name: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// `name` or `name:port`, without a scheme or a path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains("://") || text.contains('/') {
            return Err("give the host name only, like notify.school.example or 192.168.1.10:8080, without http:// or a path".to_owned());
        }
        let lower = text.to_ascii_lowercase();
        let (name, port) =
            split_port(&lower).ok_or_else(|| "expected a host name or host:port".to_owned())?;
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| "expected a port from 1 to 65535".to_owned())
            })
            .transpose()?;
        Ok(Self {
            name: name.to_owned(),
            port,
        })
    }

    fn matches(&self, host: &HostPort) -> bool {
        self.name == host.name && self.port.is_none_or(|p| p == host.port)
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Why a request was refused. Every refusal carries no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoHost,
    ForeignHost(String),
    ForeignOrigin(String),
    CrossSite(String),
    NotJson,
}

impl Refusal {
    /// The short name used in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoHost => "no_host",
            Self::ForeignHost(_) => "foreign_host",
            Self::ForeignOrigin(_) => "foreign_origin",
            Self::CrossSite(_) => "cross_site",
            Self::NotJson => "not_json",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NoHost => StatusCode::BAD_REQUEST,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// What the refusal says; `port` is the dashboard's own.
    fn message(&self, port: u16) -> String {
        let fix = format!(
            "open the dashboard by one of its own names (http://127.0.0.1:{port}/ on this PC), or add the name people use to STATUS_WEB_ALLOWED_HOSTS"
        );
        match self {
            Self::NoHost => "refused: the request has no Host header".to_owned(),
            Self::ForeignHost(host) => {
                format!("refused: this server does not answer to the name {host:?}; {fix}")
            }
            Self::ForeignOrigin(origin) => {
                format!("refused: a request sent by another web page (Origin {origin:?}); {fix}")
            }
            Self::CrossSite(site) => {
                format!("refused: a request sent by another web page (Sec-Fetch-Site {site:?})")
            }
            Self::NotJson => "Content-Type must be application/json".to_owned(),
        }
    }
}

/// The dashboard's names and the checks made on every request.
#[derive(Debug, Clone)]
pub struct Boundary {
    listen: SocketAddr,
    allowed: Arc<[AllowedHost]>,
}

impl Boundary {
    pub fn new(listen: SocketAddr, allowed: Vec<AllowedHost>) -> Self {
        Self {
            listen,
            allowed: allowed.into(),
        }
    }

    /// The listen address and the loopback names on the listen port; any IP
    /// address on that port when listening on all interfaces (an address, unlike a
    /// name, cannot be rebound to this machine by another site); the configured
    /// names.
    fn host_allowed(&self, host: &HostPort) -> bool {
        let on_port = host.port == self.listen.port();
        let own_address = match host.ip() {
            Some(ip) => {
                ip.is_loopback() || self.listen.ip().is_unspecified() || ip == self.listen.ip()
            }
            None => host.name == "localhost",
        };
        (on_port && own_address) || self.allowed.iter().any(|a| a.matches(host))
    }

    /// The page's own origin (the same host and port as the request's `Host`), or
    /// a configured name (for a reverse proxy that rewrites `Host`).
    fn origin_allowed(&self, origin: &str, host: &HostPort) -> bool {
        let Ok(uri) = origin.parse::<Uri>() else {
            return false;
        };
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => return false,
        };
        let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
        let Some(from) = uri
            .authority()
            .and_then(|a| HostPort::parse(a.as_str(), default_port))
        else {
            return false;
        };
        bare && (from == *host || self.allowed.iter().any(|a| a.matches(&from)))
    }

    /// Decides whether a request (or a Socket.IO handshake) may go on.
    pub fn judge(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let host_text = match headers.get(header::HOST) {
            Some(value) => value.to_str().unwrap_or_default().to_owned(),
            None => match uri.authority() {
                Some(authority) => authority.as_str().to_owned(),
                None => return Err(Refusal::NoHost),
            },
        };
        let host = HostPort::parse(&host_text, 80)
            .filter(|h| self.host_allowed(h))
            .ok_or_else(|| Refusal::ForeignHost(host_text.clone()))?;
        // An absolute request target must name the same host.
        if let Some(authority) = uri.authority()
            && HostPort::parse(authority.as_str(), 80).as_ref() != Some(&host)
        {
            return Err(Refusal::ForeignHost(authority.to_string()));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !self.origin_allowed(origin, &host) {
                return Err(Refusal::ForeignOrigin(origin.to_owned()));
            }
        }
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        match text(&SEC_FETCH_SITE) {
            None | Some("same-origin" | "none") => {}
            Some(site) => {
                let page_load = (method == Method::GET || method == Method::HEAD)
                    && text(&SEC_FETCH_MODE) == Some("navigate")
                    && text(&SEC_FETCH_DEST) == Some("document");
                if !page_load {
                    return Err(Refusal::CrossSite(site.to_owned()));
                }
            }
        }
        let safe = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
        if !safe && uri.path().starts_with("/api/") && !is_json(headers) {
            return Err(Refusal::NotJson);
        }
        Ok(())
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Refuses what [`Boundary::judge`] refuses, logs it, and adds the framing and
/// content headers to every answer.
///
/// A request refused before its body was read (too large, from a foreign origin, not
/// JSON) leaves the rest of the body on the connection, so hyper closes the connection
/// after answering. An error answer to a request with a body therefore says
/// `Connection: close`: the client sends its next request on a new connection, not on
/// one that is going away.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let has_body = !request.body().is_end_stream();
    let verdict = state
        .boundary
        .judge(request.method(), request.uri(), request.headers());
    let mut response = match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let path = request.uri().path();
            if refusal == Refusal::NotJson {
                tracing::info!(method = %request.method(), ?path, "refused an API call without Content-Type: application/json");
            } else {
                tracing::warn!(reason = refusal.kind(), detail = ?refusal, method = %request.method(), ?path, "refused a request from outside the dashboard");
            }
            ApiError {
                status: refusal.status(),
                field: None,
                message: refusal.message(state.boundary.listen.port()),
            }
            .into_response()
        }
    };
    let status = response.status();
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if has_body && (status.is_client_error() || status.is_server_error()) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boundary(listen: &str, allowed: &[&str]) -> Boundary {
        Boundary::new(
            listen.parse().unwrap(),
            allowed
                .iter()
                .map(|a| AllowedHost::parse(a).unwrap())
                .collect(),
        )
    }

    fn judge(
        b: &Boundary,
        method: Method,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> Result<(), Refusal> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        b.judge(&method, &path.parse().unwrap(), &headers)
    }

    #[test]
    fn hosts_are_the_listen_address_loopback_on_its_port_and_configured_names() {
        let b = boundary("127.0.0.1:8080", &["notify.school.example", "pc-tu:9000"]);
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "notify.school.example",
            "notify.school.example:8443",
            "pc-tu:9000",
        ] {
            assert_eq!(
                judge(&b, Method::GET, "/", &[("host", host)]),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost:8081",
            "127.0.0.1",
            "127.0.0.1:8080.evil.example",
            "192.168.1.10:8080",
            "pc-tu:9001",
            "pc-tu",
            "localhost.:8080",
            "",
            "a b:8080",
        ] {
            assert_eq!(
                judge(&b, Method::GET, "/", &[("host", host)]),
                Err(Refusal::ForeignHost(host.into())),
                "{host}"
            );
        }
        assert_eq!(judge(&b, Method::GET, "/", &[]), Err(Refusal::NoHost));
        // An absolute target names its own host.
        assert_eq!(
            judge(
                &b,
                Method::GET,
                "http://evil.example/api/status",
                &[("host", "127.0.0.1:8080")]
            ),
            Err(Refusal::ForeignHost("evil.example".into()))
        );
    }

    #[test]
    fn on_all_interfaces_any_address_on_the_port_but_no_unknown_name() {
        let b = boundary("0.0.0.0:8080", &[]);
        for host in [
            "192.168.1.10:8080",
            "10.0.0.5:8080",
            "[fe80::1]:8080",
            "localhost:8080",
        ] {
            assert_eq!(
                judge(&b, Method::GET, "/", &[("host", host)]),
                Ok(()),
                "{host}"
            );
        }
        for host in ["sekolah-pc.local:8080", "192.168.1.10:9090", "192.168.1.10"] {
            assert!(
                judge(&b, Method::GET, "/", &[("host", host)]).is_err(),
                "{host}"
            );
        }
        let b = boundary("192.168.1.10:80", &[]);
        assert_eq!(
            judge(&b, Method::GET, "/", &[("host", "192.168.1.10")]),
            Ok(())
        );
        assert!(judge(&b, Method::GET, "/", &[("host", "192.168.1.11")]).is_err());
    }

    #[test]
    fn origins_are_the_page_itself_or_a_configured_name() {
        let b = boundary("0.0.0.0:8080", &["notify.school.example"]);
        let host = ("host", "192.168.1.10:8080");
        let post = |origin: &str| {
            judge(
                &b,
                Method::POST,
                "/api/queue/pause",
                &[
                    host,
                    ("origin", origin),
                    ("content-type", "application/json"),
                ],
            )
        };
        assert_eq!(post("http://192.168.1.10:8080"), Ok(()));
        assert_eq!(post("https://notify.school.example"), Ok(()));
        for origin in [
            "http://192.168.1.11:8080",
            "http://192.168.1.10:3000",
            "http://evil.example",
            "null",
            "file://",
            "chrome-extension://abc",
            "http://192.168.1.10:8080/path",
            "",
        ] {
            assert_eq!(
                post(origin),
                Err(Refusal::ForeignOrigin(origin.into())),
                "{origin}"
            );
        }
        // A cross-site read is refused too, not only a write.
        assert!(
            judge(
                &b,
                Method::GET,
                "/api/status",
                &[host, ("origin", "http://evil.example")]
            )
            .is_err()
        );
    }

    #[test]
    fn only_top_level_page_loads_may_come_from_other_sites() {
        let b = boundary("127.0.0.1:8080", &[]);
        let host = ("host", "127.0.0.1:8080");
        let fetch = |method: Method, path: &str, site: &str, mode: &str, dest: &str| {
            judge(
                &b,
                method,
                path,
                &[
                    host,
                    ("sec-fetch-site", site),
                    ("sec-fetch-mode", mode),
                    ("sec-fetch-dest", dest),
                ],
            )
        };
        assert_eq!(
            fetch(Method::GET, "/", "cross-site", "navigate", "document"),
            Ok(())
        );
        assert_eq!(
            fetch(Method::GET, "/", "none", "navigate", "document"),
            Ok(())
        );
        assert_eq!(
            fetch(Method::GET, "/api/status", "same-origin", "cors", "empty"),
            Ok(())
        );
        for (site, mode, dest) in [
            ("cross-site", "navigate", "iframe"),
            ("same-site", "navigate", "iframe"),
            ("same-site", "no-cors", "script"),
            ("cross-site", "no-cors", "image"),
            ("same-site", "websocket", "websocket"),
            ("cross-site", "navigate", "object"),
        ] {
            assert_eq!(
                fetch(
                    Method::GET,
                    "/socket.io/?EIO=4&transport=polling",
                    site,
                    mode,
                    dest
                ),
                Err(Refusal::CrossSite(site.into())),
                "{site} {mode} {dest}"
            );
        }
        assert!(fetch(Method::POST, "/login", "same-site", "navigate", "document").is_err());
    }

    #[test]
    fn api_writes_need_the_json_content_type() {
        let b = boundary("127.0.0.1:8080", &[]);
        let host = ("host", "127.0.0.1:8080");
        for content_type in ["application/json", "Application/JSON; charset=utf-8"] {
            assert_eq!(
                judge(
                    &b,
                    Method::POST,
                    "/api/messages",
                    &[host, ("content-type", content_type)]
                ),
                Ok(())
            );
        }
        for pairs in [
            vec![host],
            vec![host, ("content-type", "text/plain;charset=UTF-8")],
            vec![host, ("content-type", "application/x-www-form-urlencoded")],
            vec![host, ("content-type", "multipart/form-data; boundary=x")],
            vec![host, ("content-type", "application/jsonx")],
        ] {
            for path in ["/api/gateway/logout", "/api/notices/dismiss"] {
                assert_eq!(
                    judge(&b, Method::POST, path, &pairs),
                    Err(Refusal::NotJson),
                    "{path} {pairs:?}"
                );
            }
        }
        // Reads, the login form and the Socket.IO transport keep their own types.
        assert_eq!(judge(&b, Method::GET, "/api/status", &[host]), Ok(()));
        assert_eq!(
            judge(
                &b,
                Method::POST,
                "/login",
                &[host, ("content-type", "application/x-www-form-urlencoded")]
            ),
            Ok(())
        );
        assert_eq!(
            judge(
                &b,
                Method::POST,
                "/socket.io/?EIO=4&transport=polling&sid=x",
                &[host, ("content-type", "text/plain;charset=UTF-8")]
            ),
            Ok(())
        );
    }

    #[test]
    fn configured_names_are_checked() {
        assert_eq!(
            AllowedHost::parse("Notify.School.Example:8443")
                .unwrap()
                .to_string(),
            "notify.school.example:8443"
        );
        assert_eq!(
            AllowedHost::parse("[fe80::1]").unwrap().to_string(),
            "[fe80::1]"
        );
        for bad in [
            "http://notify.example",
            "notify.example/",
            "a b",
            "",
            "host:",
            "host:99999",
            ":80",
            "fe80::1",
            "[not-v6]",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
    }
}
