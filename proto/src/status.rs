//! The WhatsApp connection statuses as every service names them (`waiting_for_qr`,
//! the dashboard's keys, `/metrics` labels, waiting reasons), and what each one
//! means for a message: one table, on the contract's own enum.

use crate::gateway::v1::ConnectionStatus;

/// What a connection status means for a message the gateway is asked to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// Messages go out.
    Ready,
    /// The account must be linked (again) by the operator: scan, enter the pair
    /// code, update. Jobs wait; the gateway answers `FAILED_PRECONDITION`.
    NotLinked,
    /// The gateway is getting there by itself (starting, connecting, reconnecting,
    /// a ban running out). Jobs wait; the gateway answers `UNAVAILABLE`.
    Unavailable,
}

impl ConnectionStatus {
    /// Every status the gateway reports, in the contract's order.
    pub const ALL: [ConnectionStatus; 10] = [
        ConnectionStatus::Starting,
        ConnectionStatus::WaitingForQr,
        ConnectionStatus::WaitingForPairCode,
        ConnectionStatus::Connecting,
        ConnectionStatus::Connected,
        ConnectionStatus::Disconnected,
        ConnectionStatus::LoggedOut,
        ConnectionStatus::Banned,
        ConnectionStatus::Replaced,
        ConnectionStatus::Outdated,
    ];

    /// The status's one name: the contract's, without its prefix, in lower case.
    pub fn name(self) -> &'static str {
        match self {
            ConnectionStatus::Unspecified => "unknown",
            ConnectionStatus::Starting => "starting",
            ConnectionStatus::WaitingForQr => "waiting_for_qr",
            ConnectionStatus::WaitingForPairCode => "waiting_for_pair_code",
            ConnectionStatus::Connecting => "connecting",
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Disconnected => "disconnected",
            ConnectionStatus::LoggedOut => "logged_out",
            ConnectionStatus::Banned => "banned",
            ConnectionStatus::Replaced => "replaced",
            ConnectionStatus::Outdated => "outdated",
        }
    }

    /// The name of a status as it travels (an `i32`); `unknown` for a value this
    /// build does not know.
    pub fn name_of(value: i32) -> &'static str {
        ConnectionStatus::try_from(value).map_or("unknown", ConnectionStatus::name)
    }

    /// What the status means for a message.
    pub fn sending(self) -> Sending {
        match self {
            ConnectionStatus::Connected => Sending::Ready,
            ConnectionStatus::WaitingForQr
            | ConnectionStatus::WaitingForPairCode
            | ConnectionStatus::LoggedOut
            | ConnectionStatus::Replaced
            | ConnectionStatus::Outdated => Sending::NotLinked,
            ConnectionStatus::Unspecified
            | ConnectionStatus::Starting
            | ConnectionStatus::Connecting
            | ConnectionStatus::Disconnected
            | ConnectionStatus::Banned => Sending::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_the_contracts_and_each_status_has_one_meaning() {
        for status in ConnectionStatus::ALL {
            let contract = status
                .as_str_name()
                .trim_start_matches("CONNECTION_STATUS_");
            assert_eq!(status.name(), contract.to_ascii_lowercase());
            assert_eq!(ConnectionStatus::name_of(status as i32), status.name());
        }
        assert_eq!(ConnectionStatus::name_of(99), "unknown");
        let not_linked: Vec<_> = ConnectionStatus::ALL
            .into_iter()
            .filter(|s| s.sending() == Sending::NotLinked)
            .map(ConnectionStatus::name)
            .collect();
        assert_eq!(
            not_linked,
            [
                "waiting_for_qr",
                "waiting_for_pair_code",
                "logged_out",
                "replaced",
                "outdated"
            ]
        );
        assert_eq!(ConnectionStatus::Banned.sending(), Sending::Unavailable);
    }
}
