//! status-web's configuration, read from `STATUS_WEB_*` environment variables.

use std::net::SocketAddr;

use abtrack_proto::config::{ConfigError, Env, Var};

pub const VARS: &[Var] = &[
    Var {
        name: "STATUS_WEB_ADDR",
        default: "127.0.0.1:8080",
        help: "HTTP listen address",
    },
    Var {
        name: "STATUS_WEB_DISPATCHER_URL",
        default: "http://127.0.0.1:50051",
        help: "the dispatcher's gRPC address",
    },
    Var {
        name: "STATUS_WEB_GATEWAY_URL",
        default: "http://127.0.0.1:50052",
        help: "the wa-gateway's gRPC address",
    },
    Var {
        name: "STATUS_WEB_LOGGER_URL",
        default: "http://127.0.0.1:50053",
        help: "the sheets-logger's gRPC address",
    },
];

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub dispatcher_url: String,
    pub gateway_url: String,
    pub logger_url: String,
}

impl Config {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        Ok(Self {
            addr: env.addr("STATUS_WEB_ADDR", "127.0.0.1:8080")?,
            dispatcher_url: env.url("STATUS_WEB_DISPATCHER_URL", "http://127.0.0.1:50051")?,
            gateway_url: env.url("STATUS_WEB_GATEWAY_URL", "http://127.0.0.1:50052")?,
            logger_url: env.url("STATUS_WEB_LOGGER_URL", "http://127.0.0.1:50053")?,
        })
    }

    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            dispatcher_url = %self.dispatcher_url,
            gateway_url = %self.gateway_url,
            logger_url = %self.logger_url,
            "configuration"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert_eq!(c.addr.port(), 8080);
        let err = Config::from_lookup(|k| (k == "STATUS_WEB_GATEWAY_URL").then(|| "nope".into()))
            .unwrap_err();
        assert_eq!(err.name, "STATUS_WEB_GATEWAY_URL");
    }
}
