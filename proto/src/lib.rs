//! Service contracts of AbTrack Notify and the few helpers every service shares.
#![forbid(unsafe_code)]

pub mod account;
pub mod addrs;
pub mod config;
pub mod health;
pub mod media;
pub mod message;
pub mod notice;
pub mod phone;
pub mod reason;
pub mod retry;
pub mod shutdown;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod status;
pub mod tasks;
pub mod telemetry;
pub mod time;
pub mod token;

/// The job queue contract (`abtrack.dispatcher.v1`).
pub mod dispatcher {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("abtrack.dispatcher.v1");
    }
}

/// The WhatsApp gateway contract (`abtrack.gateway.v1`).
pub mod gateway {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("abtrack.gateway.v1");
    }
}

/// The operator's notices every gRPC service serves (`abtrack.notices.v1`).
pub mod notices {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("abtrack.notices.v1");
    }
}

/// The outcome logger contract (`abtrack.logger.v1`).
pub mod logger {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("abtrack.logger.v1");
    }
}

pub use phone::{Jid, PhoneError, mask_numbers, mask_phone, normalize_recipient};
pub use shutdown::shutdown_signal;
