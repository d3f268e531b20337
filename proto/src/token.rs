//! The optional shared token that guards the internal gRPC traffic: every gRPC server
//! refuses calls without it, every gRPC client sends it. Anyone who can reach a gRPC
//! port can otherwise send messages, read jobs or log the WhatsApp session out.

use std::fmt;
use std::net::SocketAddr;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::config::{ConfigError, Env, Var};

/// The environment variable every service reads the token from.
pub const ENV_VAR: &str = "ABTRACK_INTERNAL_TOKEN";

/// The gRPC metadata key (an HTTP/2 header) that carries the token.
pub const METADATA_KEY: &str = "x-abtrack-internal-token";

/// The `--help` entry of [`ENV_VAR`].
pub const VAR: Var = Var {
    name: ENV_VAR,
    default: "",
    help: "shared secret every gRPC server requires and every gRPC client sends (visible ASCII, no spaces; the same on every service); unset: no token, keep the gRPC ports on loopback",
};

/// Shown instead of the token wherever it would otherwise appear.
const MASK: &str = "****";

/// A configured internal token: non-empty, visible ASCII only. Its value never
/// reaches a log or an error message.
#[derive(Clone)]
pub struct InternalToken {
    value: AsciiMetadataValue,
}

impl fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalToken(****)")
    }
}

impl InternalToken {
    /// Checks a configured value: not empty, and only visible ASCII (`!` to `~`), so it
    /// travels unchanged in an HTTP/2 header and cannot hide a stray space or newline.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let refuse = |reason: &str| ConfigError::new(ENV_VAR, MASK, reason);
        if raw.is_empty() {
            return Err(refuse(
                "is empty; unset it to run without a token, or set the shared token",
            ));
        }
        if let Some(position) = raw.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(refuse(&format!(
                "has a space, control or non-ASCII character at position {}; use visible ASCII characters only",
                position + 1
            )));
        }
        let mut value =
            MetadataValue::try_from(raw).map_err(|_| refuse("cannot be sent as a gRPC header"))?;
        value.set_sensitive(true);
        Ok(Self { value })
    }

    /// Reads [`ENV_VAR`]: `None` when unset. A value that is set but empty or blank is
    /// an error, not "no token": a token that was meant to be there must not silently
    /// turn the protection off.
    pub fn from_env(
        env: &Env<impl Fn(&str) -> Option<String>>,
    ) -> Result<Option<Self>, ConfigError> {
        env.raw(ENV_VAR).map(|raw| Self::parse(&raw)).transpose()
    }

    /// Compares in constant time: every byte of the longer of the two is looked at,
    /// so the time taken says nothing about how much of a guess was right.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        same_secret(self.value.as_bytes(), candidate)
    }
}

/// Compares a secret (a token, a password, an API key) in constant time, so the time
/// an answer takes tells nothing of how much of a guess was right; only the length
/// can show.
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    expected.ct_eq(given).into()
}

/// Server side: refuses every call that lacks the token, with `UNAUTHENTICATED`.
/// Without a configured token every call passes (the service is open, as before).
/// The health service is left outside it, so health checks need no token.
#[derive(Clone, Debug)]
pub struct RequireToken {
    expected: Option<InternalToken>,
}

impl RequireToken {
    pub fn new(expected: Option<InternalToken>) -> Self {
        Self { expected }
    }
}

/// The message a call without the token is refused with.
pub const MISSING: &str = "missing internal token";
/// The message a call with another token is refused with.
pub const WRONG: &str = "wrong internal token";

impl Interceptor for RequireToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let refused = match request.metadata().get(METADATA_KEY) {
            None => MISSING,
            Some(sent) if expected.matches(sent.as_bytes()) => {
                // The service behind has no use for it.
                request.metadata_mut().remove(METADATA_KEY);
                return Ok(request);
            }
            Some(_) => WRONG,
        };
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        tracing::warn!(peer = %peer, "gRPC call refused: {refused}; set the same {ENV_VAR} on every service");
        Err(Status::unauthenticated(refused))
    }
}

/// Wraps a gRPC service so it requires the token.
pub fn require<S>(
    service: S,
    token: Option<&InternalToken>,
) -> InterceptedService<S, RequireToken> {
    InterceptedService::new(service, RequireToken::new(token.cloned()))
}

/// Client side: adds the token (when one is configured) to every request.
#[derive(Clone, Debug)]
pub struct SendToken {
    token: Option<InternalToken>,
}

impl SendToken {
    pub fn new(token: Option<InternalToken>) -> Self {
        Self { token }
    }
}

impl Interceptor for SendToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert(METADATA_KEY, token.value.clone());
        }
        Ok(request)
    }
}

/// A channel to another service that sends the internal token on every call.
pub type TokenChannel = InterceptedService<Channel, SendToken>;

/// Wraps a channel so every call made on it carries the token.
pub fn with_token(channel: Channel, token: Option<&InternalToken>) -> TokenChannel {
    InterceptedService::new(channel, SendToken::new(token.cloned()))
}

/// Whether a status is another service refusing this one's token.
pub fn is_refused(status: &Status) -> bool {
    status.code() == tonic::Code::Unauthenticated
}

/// Logs once at start whether a token is set (never its value), and warns when a gRPC
/// server listens beyond loopback without one.
pub fn log_startup(token: Option<&InternalToken>, grpc_addr: Option<SocketAddr>) {
    match token {
        Some(_) => tracing::info!(
            "internal token set: gRPC calls without {ENV_VAR} are refused, and calls to other services carry it"
        ),
        None => tracing::info!("no internal token ({ENV_VAR} unset): gRPC calls are not checked"),
    }
    if let Some(addr) = grpc_addr
        && token.is_none()
        && !addr.ip().is_loopback()
    {
        tracing::warn!(
            addr = %addr,
            "gRPC listens beyond loopback without an internal token: anyone who reaches this port can call it; set {ENV_VAR} on every service"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn token(raw: &str) -> InternalToken {
        InternalToken::parse(raw).unwrap()
    }

    fn call(interceptor: &mut RequireToken, sent: Option<&str>) -> Result<Request<()>, Status> {
        let mut request = Request::new(());
        if let Some(sent) = sent {
            request
                .metadata_mut()
                .insert(METADATA_KEY, sent.parse().unwrap());
        }
        interceptor.call(request)
    }

    #[test]
    fn a_call_without_the_token_is_refused() {
        let mut server = RequireToken::new(Some(token("s3cret-Token")));
        let status = call(&mut server, None).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "missing internal token");
    }

    #[test]
    fn a_wrong_token_is_refused_without_echoing_either() {
        let mut server = RequireToken::new(Some(token("s3cret-Token")));
        for wrong in [
            "s3cret-Toke",
            "s3cret-Token2",
            "S3cret-Token",
            "x",
            "s3cret-Tokem",
        ] {
            let status = call(&mut server, Some(wrong)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong}");
            assert_eq!(status.message(), "wrong internal token");
            assert!(!format!("{status:?}").contains("s3cret"), "{status:?}");
        }
    }

    #[test]
    fn the_right_token_passes_and_is_not_handed_on() {
        let mut server = RequireToken::new(Some(token("s3cret-Token")));
        let request = call(&mut server, Some("s3cret-Token")).unwrap();
        assert!(request.metadata().get(METADATA_KEY).is_none());
    }

    #[test]
    fn without_a_configured_token_everything_passes() {
        let mut server = RequireToken::new(None);
        assert!(call(&mut server, None).is_ok());
        assert!(call(&mut server, Some("anything")).is_ok());
    }

    #[test]
    fn the_client_side_sends_what_the_server_side_wants() {
        let t = token("shared~Token!42");
        let sent = SendToken::new(Some(t.clone()))
            .call(Request::new(()))
            .unwrap();
        let mut server = RequireToken::new(Some(t));
        assert!(server.call(sent).is_ok());
        let unsent = SendToken::new(None).call(Request::new(())).unwrap();
        assert!(unsent.metadata().get(METADATA_KEY).is_none());
    }

    #[test]
    fn comparison_looks_at_length_and_every_byte() {
        let t = token("abcdef");
        assert!(t.matches(b"abcdef"));
        assert!(!t.matches(b"abcde"));
        assert!(!t.matches(b"abcdefg"));
        assert!(!t.matches(b"abcdeF"));
        assert!(!t.matches(b"Abcdef"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn bad_values_are_configuration_errors_that_hide_the_value() {
        for bad in [
            "",
            " ",
            "   ",
            "two words",
            "tab\there",
            "new\nline",
            " lead",
            "trail ",
            "tökën",
            "\u{7f}del",
        ] {
            let err = InternalToken::parse(bad).unwrap_err();
            assert_eq!(err.name, ENV_VAR, "{bad:?}");
            assert_eq!(err.value, "****", "{bad:?}");
        }
        let err = InternalToken::parse("two words").unwrap_err();
        assert!(err.to_string().contains("position 4"), "{err}");
        assert!(!err.to_string().contains("words"), "{err}");
        assert!(InternalToken::parse("!visible~ASCII_only-0123").is_ok());
        assert_eq!(format!("{:?}", token("hidden")), "InternalToken(****)");
    }

    #[test]
    fn read_from_the_environment_once() {
        let read = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            InternalToken::from_env(&Env::new(move |k| map.get(k).cloned()))
        };
        assert!(read(&[]).unwrap().is_none());
        assert!(
            read(&[(ENV_VAR, "tok-123")])
                .unwrap()
                .unwrap()
                .matches(b"tok-123")
        );
        assert_eq!(read(&[(ENV_VAR, "")]).unwrap_err().name, ENV_VAR);
        assert_eq!(read(&[(ENV_VAR, "  ")]).unwrap_err().name, ENV_VAR);
    }
}
