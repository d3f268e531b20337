//! Where each service listens, and where its clients find it (and where status-web
//! finds the launcher's record): the variables the services read and the launcher
//! sets, declared once.

use crate::config::Var;

pub const DISPATCHER_ADDR: Var = Var {
    name: "DISPATCHER_ADDR",
    default: "127.0.0.1:50051",
    help: "gRPC listen address",
};

pub const WA_ADDR: Var = Var {
    name: "WA_ADDR",
    default: "127.0.0.1:50052",
    help: "gRPC listen address",
};

pub const SHEETS_ADDR: Var = Var {
    name: "SHEETS_ADDR",
    default: "127.0.0.1:50053",
    help: "gRPC listen address",
};

pub const STATUS_WEB_ADDR: Var = Var {
    name: "STATUS_WEB_ADDR",
    default: "127.0.0.1:8080",
    help: "HTTP listen address",
};

pub const DISPATCHER_GATEWAY_URL: Var = Var {
    name: "DISPATCHER_GATEWAY_URL",
    default: "http://127.0.0.1:50052",
    help: "the wa-gateway's gRPC address",
};

pub const DISPATCHER_LOGGER_URL: Var = Var {
    name: "DISPATCHER_LOGGER_URL",
    default: "http://127.0.0.1:50053",
    help: "the sheets-logger's gRPC address",
};

pub const STATUS_WEB_DISPATCHER_URL: Var = Var {
    name: "STATUS_WEB_DISPATCHER_URL",
    default: "http://127.0.0.1:50051",
    help: "the dispatcher's gRPC address",
};

pub const STATUS_WEB_GATEWAY_URL: Var = Var {
    name: "STATUS_WEB_GATEWAY_URL",
    default: "http://127.0.0.1:50052",
    help: "the wa-gateway's gRPC address",
};

pub const STATUS_WEB_LOGGER_URL: Var = Var {
    name: "STATUS_WEB_LOGGER_URL",
    default: "http://127.0.0.1:50053",
    help: "the sheets-logger's gRPC address",
};

pub const LAUNCHER_FILE: Var = Var {
    name: "STATUS_WEB_LAUNCHER_FILE",
    default: "",
    help: "the launcher's record of service restarts (JSON), set by the launcher (abtrack-notify); empty: restarts are not shown",
};

/// Each client address and the listen address of the server it reaches: a client
/// left unset follows the address its server was given.
pub const CLIENTS: &[(Var, Var)] = &[
    (DISPATCHER_GATEWAY_URL, WA_ADDR),
    (DISPATCHER_LOGGER_URL, SHEETS_ADDR),
    (STATUS_WEB_DISPATCHER_URL, DISPATCHER_ADDR),
    (STATUS_WEB_GATEWAY_URL, WA_ADDR),
    (STATUS_WEB_LOGGER_URL, SHEETS_ADDR),
];

/// The address to reach a listener on this machine: a wildcard bind
/// (`0.0.0.0`, `[::]`) is reached on loopback.
pub fn local(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_default_reaches_its_servers_default() {
        for (client, server) in CLIENTS {
            assert_eq!(
                client.default,
                format!("http://{}", server.default),
                "{}",
                client.name
            );
        }
    }

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        let local = |s: &str| local(s.parse().unwrap()).to_string();
        assert_eq!(local("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(local("[::]:8080"), "[::1]:8080");
        assert_eq!(local("192.168.1.5:8080"), "192.168.1.5:8080");
    }
}
