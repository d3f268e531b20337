//! What WhatsApp's server answered to a sent message, and what the job gets for it:
//! the one table of the error codes the server puts on a message's `<ack>` (a nack),
//! as `whatsapp-rust` and WhatsApp Web document them. `docs/whatsapp.md` shows the
//! same table.

use crate::error::{Error, Refusal};

/// The code of a reach-out time lock, whose end the gateway asks WhatsApp for.
pub const TIME_LOCK: &str = "463";
/// The account used up the new chats it may open for now.
pub const NEW_CHAT_CAP: &str = "475";

/// One error code of a message nack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerError {
    pub code: &'static str,
    pub refusal: Refusal,
    /// What happened, in plain words, for the job's `lastError`.
    pub sentence: &'static str,
}

/// Every code the gateway knows. A code not in this table is [`UNKNOWN`].
pub const TABLE: &[ServerError] = &[
    ServerError {
        code: "400",
        refusal: Refusal::Permanent,
        sentence: "WhatsApp refused the message as malformed",
    },
    ServerError {
        code: "403",
        refusal: Refusal::Permanent,
        sentence: "WhatsApp does not allow this account to message this recipient",
    },
    ServerError {
        code: "404",
        refusal: Refusal::Permanent,
        sentence: "WhatsApp does not know this recipient",
    },
    ServerError {
        code: "405",
        refusal: Refusal::Permanent,
        sentence: "WhatsApp does not allow this kind of message here",
    },
    ServerError {
        code: "406",
        refusal: Refusal::Permanent,
        sentence: "WhatsApp refused the message as not acceptable",
    },
    ServerError {
        code: "421",
        refusal: Refusal::Transient,
        sentence: "WhatsApp says the group's addressing changed; the message is sent again with fresh group data",
    },
    ServerError {
        code: "429",
        refusal: Refusal::Held,
        sentence: "WhatsApp asks this account to send more slowly; the message waits and is sent again later",
    },
    ServerError {
        code: "463",
        refusal: Refusal::Held,
        sentence: "WhatsApp does not let this account start new chats right now (a reach-out time lock, often after many messages to people who never wrote to the school); the message waits and is sent again later",
    },
    ServerError {
        code: "473",
        refusal: Refusal::Permanent,
        sentence: "WhatsApp refused this kind of business message",
    },
    ServerError {
        code: "475",
        refusal: Refusal::Held,
        sentence: "this account has used up the new chats WhatsApp allows it for now; the message waits and is sent again later",
    },
    ServerError {
        code: "479",
        refusal: Refusal::Permanent,
        sentence: "WhatsApp refused a field of the message as badly formed (for example the recipient's address)",
    },
    ServerError {
        code: "500",
        refusal: Refusal::Transient,
        sentence: "WhatsApp had an internal error; the message is sent again",
    },
    ServerError {
        code: "503",
        refusal: Refusal::Transient,
        sentence: "WhatsApp's service was unavailable; the message is sent again",
    },
];

/// A code the table does not know: sent again a few times, then `failed`.
pub const UNKNOWN: ServerError = ServerError {
    code: "",
    refusal: Refusal::Transient,
    sentence: "WhatsApp refused the message with an error code the gateway does not know; it is sent again",
};

/// The table's entry for `code`.
pub fn lookup(code: &str) -> ServerError {
    TABLE
        .iter()
        .copied()
        .find(|e| e.code == code)
        .unwrap_or(UNKNOWN)
}

/// The error for a message the server answered with `code`.
pub fn refused(code: &str, retry_at: Option<i64>) -> Error {
    let entry = lookup(code);
    let digits: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    Error::Refused {
        reason: format!("whatsapp_{}", digits.to_ascii_lowercase()),
        message: format!("WhatsApp error {digits}: {}", entry.sentence),
        refusal: entry.refusal,
        retry_at,
    }
}

/// The error for a message the server never acknowledged, even when sent again.
pub fn no_server_ack(waited_secs: u64) -> Error {
    Error::Refused {
        reason: "no_server_ack".into(),
        message: format!(
            "WhatsApp's server did not acknowledge the message within {waited_secs}s, also when it was sent again under the same id; it may not have arrived"
        ),
        refusal: Refusal::Permanent,
        retry_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_code_has_one_entry_and_a_sentence() {
        for (i, entry) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|e| e.code != entry.code),
                "{} twice",
                entry.code
            );
            assert!(
                entry.code.bytes().all(|b| b.is_ascii_digit()),
                "{}",
                entry.code
            );
            assert!(!entry.sentence.is_empty() && !entry.sentence.ends_with('.'));
        }
    }

    #[test]
    fn codes_map_to_the_job_outcome() {
        let cases = [
            ("479", Code::PermissionDenied, "whatsapp_479"),
            ("400", Code::PermissionDenied, "whatsapp_400"),
            ("404", Code::PermissionDenied, "whatsapp_404"),
            ("463", Code::ResourceExhausted, "whatsapp_463"),
            ("475", Code::ResourceExhausted, "whatsapp_475"),
            ("429", Code::ResourceExhausted, "whatsapp_429"),
            ("500", Code::Aborted, "whatsapp_500"),
            ("503", Code::Aborted, "whatsapp_503"),
            ("999", Code::Aborted, "whatsapp_999"),
            ("x<y>\nz", Code::Aborted, "whatsapp_xyz"),
        ];
        for (code, grpc, reason) in cases {
            let status = tonic::Status::from(refused(code, None));
            assert_eq!(status.code(), grpc, "{code}");
            assert_eq!(
                abtrack_proto::reason::reason(&status),
                Some(reason),
                "{code}"
            );
            assert!(
                status.message().starts_with("WhatsApp error "),
                "{}",
                status.message()
            );
        }
        let lock = tonic::Status::from(refused("463", Some(1_770_000_000_000)));
        assert_eq!(
            abtrack_proto::reason::retry_at_ms(&lock),
            Some(1_770_000_000_000)
        );
        let silent = tonic::Status::from(no_server_ack(30));
        assert_eq!(silent.code(), Code::PermissionDenied);
        assert_eq!(
            abtrack_proto::reason::reason(&silent),
            Some("no_server_ack")
        );
    }
}
