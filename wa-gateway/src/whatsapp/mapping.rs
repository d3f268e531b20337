//! What each `whatsapp-rust` event means for the session's state: one pure function,
//! so every transition is tested by feeding it the library's own event values.

use std::time::Duration;

use whatsapp_rust::types::events::{ConnectFailureReason, Event};
use whatsapp_rust::types::presence::ReceiptType;

use abtrack_proto::mask_phone;

use crate::messenger::{ReceiptKind, Status};

/// How long a pair code from a passkey confirmation stays usable (the library's
/// pair codes say about three minutes).
const PASSKEY_CODE_VALIDITY: Duration = Duration::from_secs(180);

/// What the supervisor does with one library event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Logged in: publish `connected` with the account's number and name.
    Connected,
    /// A QR code to show; `waiting_for_qr`.
    Qr { code: String, valid_for: Duration },
    /// A pair code to show; `waiting_for_pair_code`.
    PairCode { code: String, valid_for: Duration },
    /// A new state while the connection goes on.
    Publish { status: Status, detail: String },
    /// The connection is over (or about to be); `end` says what comes next. When
    /// `close` is set, the library leaves the socket open and the gateway closes it.
    End { end: End, close: bool },
    /// Not a change of the connection, but worth a line in the log.
    Note(String),
    /// A delivery or read receipt for messages this account sent.
    Receipts {
        message_ids: Vec<String>,
        kind: ReceiptKind,
        at: i64,
    },
}

/// How a connection ended, and so what the supervisor does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `disconnected`: reconnect after the backoff delay.
    Retry(String),
    /// `connecting`: reconnect at once (after linking, or for a new pairing round).
    RetryNow(String),
    /// `logged_out`: the session is gone or rejected; move it aside and pair again.
    Heal(String),
    /// `banned`: wait until the ban ends (`until` in ms since the epoch, when known).
    Banned { until: Option<i64>, reason: String },
    /// `replaced`: the session was opened elsewhere.
    Replaced(String),
    /// `outdated`: WhatsApp refuses this client version.
    Outdated(String),
}

impl End {
    /// The state published as soon as the end is known.
    pub fn status(&self) -> Status {
        match self {
            End::Retry(_) => Status::Disconnected,
            End::RetryNow(_) => Status::Connecting,
            End::Heal(_) => Status::LoggedOut,
            End::Banned { .. } => Status::Banned,
            End::Replaced(_) => Status::Replaced,
            End::Outdated(_) => Status::Outdated,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            End::Retry(r)
            | End::RetryNow(r)
            | End::Heal(r)
            | End::Replaced(r)
            | End::Outdated(r)
            | End::Banned { reason: r, .. } => r,
        }
    }
}

/// Maps one library event; `None` for events that concern neither the connection
/// nor receipts (incoming messages, presence, app-state sync, ...).
pub fn map_event(event: &Event, now_ms: i64) -> Option<Step> {
    let step = match event {
        Event::Connected(_) => Step::Connected,
        Event::Disconnected(d) => Step::End {
            end: End::Retry(format!("connection lost: {}", d.reason)),
            close: false,
        },
        Event::PairSuccess(p) => Step::End {
            end: End::RetryNow(format!(
                "linked to {} ({}); reconnecting to log in",
                mask_phone(&p.id.user),
                p.platform
            )),
            close: false,
        },
        Event::PairError(p) => Step::Publish {
            status: Status::WaitingForQr,
            detail: format!("linking failed on the phone: {}; scan again", p.error),
        },
        Event::LoggedOut(l) => Step::End {
            end: End::Heal(format!(
                "WhatsApp ended the session ({}){}",
                failure_name(l.reason),
                if l.on_connect {
                    " when connecting"
                } else {
                    ""
                }
            )),
            close: false,
        },
        Event::PairingQrCode(q) => Step::Qr {
            code: q.code.clone(),
            valid_for: q.timeout,
        },
        Event::PairingCode(p) => Step::PairCode {
            code: p.code.clone(),
            valid_for: p.timeout,
        },
        Event::PairingCodeRefresh(r) => Step::End {
            end: End::RetryNow(if r.force_manual {
                "WhatsApp withdrew the pair code; starting a new pairing round".into()
            } else {
                "the pair code was not confirmed in time; starting a new pairing round".into()
            }),
            close: true,
        },
        Event::PairingCodeError(e) => Step::End {
            end: End::RetryNow(format!(
                "the pair code failed ({}); starting a new pairing round",
                e.error
            )),
            close: true,
        },
        Event::PairingQrCodesExhausted(x) => Step::End {
            end: End::RetryNow("the QR codes ran out; starting a new pairing round".into()),
            // With a pair code outstanding the library keeps the socket; the code
            // outlives no QR round here, a fresh round gives fresh codes of both kinds.
            close: !x.disconnected,
        },
        Event::QrScannedWithoutMultidevice(_) => Step::Publish {
            status: Status::WaitingForQr,
            detail: "the phone scanned the code but has multi-device off; update WhatsApp on the phone and scan again".into(),
        },
        Event::ClientOutdated(_) => Step::End {
            end: End::Outdated(
                "WhatsApp refuses this client version; set WA_CLIENT_VERSION or update the gateway"
                    .into(),
            ),
            close: false,
        },
        Event::StreamReplaced(_) => Step::End {
            end: End::Replaced("the session was opened elsewhere (another gateway or browser with the same session)".into()),
            close: false,
        },
        Event::TemporaryBan(b) => {
            let secs = b.expire.num_seconds().max(0);
            Step::End {
                end: End::Banned {
                    until: Some(now_ms.saturating_add(secs.saturating_mul(1000))),
                    reason: format!("temporarily banned: {}", b.code),
                },
                close: false,
            }
        }
        Event::ConnectFailure(f) => Step::End {
            end: connect_failure(f.reason, f.message.as_deref()),
            close: false,
        },
        Event::StreamError(e) => Step::Note(format!(
            "WhatsApp reported stream error {:?}; the connection stays open",
            e.code
        )),
        Event::PairPasskeyRequest(_) => Step::Publish {
            status: Status::WaitingForPairCode,
            detail: "WhatsApp asks for a passkey confirmation on the phone".into(),
        },
        Event::PairPasskeyConfirmation(c) => Step::PairCode {
            code: c.code.clone(),
            valid_for: PASSKEY_CODE_VALIDITY,
        },
        Event::PairPasskeyError(e) => Step::End {
            end: End::RetryNow(format!(
                "passkey linking failed ({}); starting a new pairing round",
                e.error
            )),
            close: true,
        },
        Event::Receipt(r) => {
            let kind = match r.r#type {
                ReceiptType::Delivered => ReceiptKind::Delivered,
                ReceiptType::Read | ReceiptType::Played => ReceiptKind::Read,
                _ => return None,
            };
            Step::Receipts {
                message_ids: r.message_ids.iter().map(ToString::to_string).collect(),
                kind,
                at: r.timestamp.timestamp_millis(),
            }
        }
        _ => return None,
    };
    Some(step)
}

fn connect_failure(reason: ConnectFailureReason, message: Option<&str>) -> End {
    let said = message.map(|m| format!(": {m}")).unwrap_or_default();
    let name = failure_name(reason);
    match reason {
        r if r.is_logged_out() => End::Heal(format!("WhatsApp ended the session ({name}){said}")),
        // The server does not know this device: the stored session is of no use.
        ConnectFailureReason::ClientUnknown | ConnectFailureReason::NotFound => End::Heal(format!(
            "WhatsApp rejected the stored session ({name}){said}"
        )),
        ConnectFailureReason::ClientOutdated | ConnectFailureReason::BadUserAgent => {
            End::Outdated(format!("WhatsApp refuses this client ({name}){said}"))
        }
        ConnectFailureReason::TempBanned => End::Banned {
            until: None,
            reason: format!("temporarily banned{said}"),
        },
        _ => End::Retry(format!("WhatsApp refused the connection ({name}){said}")),
    }
}

fn failure_name(reason: ConnectFailureReason) -> String {
    let code = match reason {
        ConnectFailureReason::Generic => "400 generic",
        ConnectFailureReason::LoggedOut => "401 logged out",
        ConnectFailureReason::TempBanned => "402 temporarily banned",
        ConnectFailureReason::AccountLocked => "403 account locked",
        ConnectFailureReason::UnknownLogout => "406 unknown logout",
        ConnectFailureReason::ClientOutdated => "405 client outdated",
        ConnectFailureReason::BadUserAgent => "409 bad user agent",
        ConnectFailureReason::CatExpired => "413 auth token expired",
        ConnectFailureReason::CatInvalid => "414 auth token invalid",
        ConnectFailureReason::NotFound => "415 not found",
        ConnectFailureReason::ClientUnknown => "418 client unknown",
        ConnectFailureReason::InternalServerError => "500 internal server error",
        ConnectFailureReason::Experimental => "501 experimental",
        ConnectFailureReason::ServiceUnavailable => "503 service unavailable",
        ConnectFailureReason::Unknown(code) => return format!("{code} unknown"),
    };
    code.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::transport::DisconnectReason;
    use whatsapp_rust::types::events::{
        ClientOutdated, ConnectFailure, Connected, Disconnected, LoggedOut, PairError, PairSuccess,
        PairingCode, PairingCodeError, PairingCodeRefresh, PairingQrCode, PairingQrCodesExhausted,
        QrScannedWithoutMultidevice, Receipt, StreamError, StreamReplaced, TempBanReason,
        TemporaryBan,
    };
    use whatsapp_rust::types::message::MessageSource;

    const NOW: i64 = 1_700_000_000_000;

    fn jid(s: &str) -> whatsapp_rust::Jid {
        s.parse().unwrap()
    }

    fn map(event: Event) -> Step {
        map_event(&event, NOW).expect("a connection event is mapped")
    }

    fn end_of(event: Event) -> (End, bool) {
        match map(event) {
            Step::End { end, close } => (end, close),
            other => panic!("expected an end, got {other:?}"),
        }
    }

    #[test]
    fn connected_publishes_connected() {
        assert_eq!(
            map(Event::Connected(Connected::builder().build())),
            Step::Connected
        );
    }

    #[test]
    fn disconnected_retries_with_backoff_and_names_the_reason() {
        let (end, close) = end_of(Event::Disconnected(
            Disconnected::builder()
                .reason(DisconnectReason::ReadError("reset by peer".into()))
                .build(),
        ));
        assert!(!close);
        assert_eq!(end.status(), Status::Disconnected);
        assert!(end.reason().contains("reset by peer"), "{end:?}");
        assert!(matches!(end, End::Retry(_)));
    }

    #[test]
    fn pair_success_reconnects_at_once() {
        let (end, _) = end_of(Event::PairSuccess(
            PairSuccess::builder()
                .id(jid("6281234567890:5@s.whatsapp.net"))
                .lid(jid("100000001:5@lid"))
                .business_name(String::new())
                .platform("android".into())
                .build(),
        ));
        assert!(matches!(end, End::RetryNow(_)));
        assert_eq!(end.status(), Status::Connecting);
        // The number is masked in what the state shows.
        assert!(!end.reason().contains("6281234567890"), "{end:?}");
    }

    #[test]
    fn pair_error_keeps_waiting_for_a_scan() {
        let step = map(Event::PairError(
            PairError::builder()
                .id(jid("6281234567890@s.whatsapp.net"))
                .lid(jid("100000001@lid"))
                .business_name(String::new())
                .platform("android".into())
                .error("key mismatch".into())
                .build(),
        ));
        assert!(
            matches!(&step, Step::Publish { status: Status::WaitingForQr, detail } if detail.contains("key mismatch")),
            "{step:?}"
        );
    }

    #[test]
    fn logged_out_heals() {
        for on_connect in [false, true] {
            let (end, _) = end_of(Event::LoggedOut(
                LoggedOut::builder()
                    .on_connect(on_connect)
                    .reason(ConnectFailureReason::LoggedOut)
                    .build(),
            ));
            assert!(matches!(end, End::Heal(_)), "{end:?}");
            assert_eq!(end.status(), Status::LoggedOut);
        }
    }

    #[test]
    fn qr_code_is_shown_with_its_validity() {
        let step = map(Event::PairingQrCode(
            PairingQrCode::builder()
                .code("2@abc,def,ghi".into())
                .timeout(Duration::from_secs(60))
                .build(),
        ));
        assert_eq!(
            step,
            Step::Qr {
                code: "2@abc,def,ghi".into(),
                valid_for: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn pair_code_is_shown_with_its_validity() {
        let step = map(Event::PairingCode(
            PairingCode::builder()
                .code("ABCD-EFGH".into())
                .timeout(Duration::from_secs(180))
                .build(),
        ));
        assert_eq!(
            step,
            Step::PairCode {
                code: "ABCD-EFGH".into(),
                valid_for: Duration::from_secs(180)
            }
        );
    }

    #[test]
    fn pair_code_refresh_and_error_start_a_new_round() {
        let (end, close) = end_of(Event::PairingCodeRefresh(
            PairingCodeRefresh::builder().force_manual(true).build(),
        ));
        assert!(matches!(end, End::RetryNow(_)) && close, "{end:?}");
        let (end, close) = end_of(Event::PairingCodeError(
            PairingCodeError::builder()
                .error("throttled".into())
                .build(),
        ));
        assert!(matches!(end, End::RetryNow(_)) && close, "{end:?}");
        assert!(end.reason().contains("throttled"));
    }

    #[test]
    fn qr_codes_exhausted_start_a_new_round() {
        // The library closed the socket itself.
        let (end, close) = end_of(Event::PairingQrCodesExhausted(
            PairingQrCodesExhausted::builder()
                .disconnected(true)
                .build(),
        ));
        assert!(matches!(end, End::RetryNow(_)) && !close);
        // The library left the socket open (a pair code was outstanding): we close it.
        let (end, close) = end_of(Event::PairingQrCodesExhausted(
            PairingQrCodesExhausted::builder()
                .disconnected(false)
                .build(),
        ));
        assert!(matches!(end, End::RetryNow(_)) && close);
    }

    #[test]
    fn qr_scanned_without_multidevice_asks_for_an_update() {
        let step = map(Event::QrScannedWithoutMultidevice(
            QrScannedWithoutMultidevice::builder().build(),
        ));
        assert!(matches!(
            step,
            Step::Publish {
                status: Status::WaitingForQr,
                ..
            }
        ));
    }

    #[test]
    fn client_outdated_is_outdated() {
        let (end, _) = end_of(Event::ClientOutdated(ClientOutdated::builder().build()));
        assert_eq!(end.status(), Status::Outdated);
    }

    #[test]
    fn stream_replaced_is_replaced() {
        let (end, _) = end_of(Event::StreamReplaced(StreamReplaced::builder().build()));
        assert_eq!(end.status(), Status::Replaced);
    }

    #[test]
    fn temporary_ban_says_until_when() {
        let (end, _) = end_of(Event::TemporaryBan(
            TemporaryBan::builder()
                .code(TempBanReason::BlockedByUsers)
                .expire(whatsapp_rust::chrono::Duration::seconds(3600))
                .build(),
        ));
        assert_eq!(
            end,
            End::Banned {
                until: Some(NOW + 3_600_000),
                reason: format!("temporarily banned: {}", TempBanReason::BlockedByUsers),
            }
        );
    }

    #[test]
    fn connect_failures_map_by_reason() {
        let cases = [
            (ConnectFailureReason::LoggedOut, Status::LoggedOut),
            (ConnectFailureReason::AccountLocked, Status::LoggedOut),
            (ConnectFailureReason::UnknownLogout, Status::LoggedOut),
            (ConnectFailureReason::ClientUnknown, Status::LoggedOut),
            (ConnectFailureReason::NotFound, Status::LoggedOut),
            (ConnectFailureReason::ClientOutdated, Status::Outdated),
            (ConnectFailureReason::BadUserAgent, Status::Outdated),
            (ConnectFailureReason::TempBanned, Status::Banned),
            (
                ConnectFailureReason::ServiceUnavailable,
                Status::Disconnected,
            ),
            (
                ConnectFailureReason::InternalServerError,
                Status::Disconnected,
            ),
            (ConnectFailureReason::Generic, Status::Disconnected),
            (ConnectFailureReason::CatExpired, Status::Disconnected),
            (ConnectFailureReason::Unknown(499), Status::Disconnected),
        ];
        for (reason, status) in cases {
            let (end, close) = end_of(Event::ConnectFailure(
                ConnectFailure::builder()
                    .reason(reason)
                    .message("try later".into())
                    .build(),
            ));
            assert_eq!(end.status(), status, "{reason:?}");
            assert!(!close);
            assert!(end.reason().contains("try later"), "{end:?}");
        }
    }

    #[test]
    fn stream_error_is_logged_not_a_state_change() {
        let step = map(Event::StreamError(
            StreamError::builder().code("999".into()).build(),
        ));
        assert!(matches!(step, Step::Note(n) if n.contains("999")));
    }

    #[test]
    fn receipts_for_delivery_and_read() {
        let at = whatsapp_rust::chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let receipt = |kind| {
            Event::Receipt(
                Receipt::builder()
                    .source(MessageSource::default())
                    .message_ids(vec!["3EB0AA".into(), "3EB0BB".into()])
                    .timestamp(at)
                    .r#type(kind)
                    .offline(false)
                    .build(),
            )
        };
        assert_eq!(
            map(receipt(ReceiptType::Delivered)),
            Step::Receipts {
                message_ids: vec!["3EB0AA".into(), "3EB0BB".into()],
                kind: ReceiptKind::Delivered,
                at: 1_700_000_000_000
            }
        );
        assert!(matches!(
            map(receipt(ReceiptType::Read)),
            Step::Receipts {
                kind: ReceiptKind::Read,
                ..
            }
        ));
        assert_eq!(map_event(&receipt(ReceiptType::Retry), NOW), None);
    }
}
