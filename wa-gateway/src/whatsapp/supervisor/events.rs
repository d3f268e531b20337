//! What one library event does to the supervisor: the state it publishes, the QR
//! code it prints in the terminal, and the end of a connection it notes.

use std::sync::Arc;
use std::time::Duration;

use whatsapp_rust::Client;
use whatsapp_rust::types::events::Event;

use abtrack_proto::mask_phone;
use abtrack_proto::time::now_ms;

use super::Supervisor;
use crate::messenger::{MessengerEvent, Status};
use crate::whatsapp::mapping::{End, Step, map_event};

impl Supervisor {
    /// Applies one library event; a connection end is kept in `end` (the more
    /// serious one wins when several arrive).
    pub(super) fn on_event(&mut self, client: &Arc<Client>, event: &Event, end: &mut Option<End>) {
        let Some(step) = map_event(event, now_ms()) else {
            return;
        };
        match step {
            Step::Connected => {
                if !self.unanswered {
                    self.backoff.reset();
                }
                let own = client.pn().map(|j| j.user.to_string()).unwrap_or_default();
                let name = client.push_name();
                tracing::info!(own_number = %mask_phone(&own), "connected to WhatsApp");
                self.publish(Status::Connected, "logged in to WhatsApp".into(), |s| {
                    s.own_number = own.clone();
                    s.push_name = name.clone();
                });
            }
            Step::Qr { code, valid_for } => {
                let expires_at = now_ms() + valid_for.as_millis() as i64;
                if self.settings.print_qr {
                    print_qr(&code, valid_for);
                }
                let _ = self.events.send(MessengerEvent::Qr { code, expires_at });
                if !self.pair_code_outstanding {
                    self.publish(
                        Status::WaitingForQr,
                        format!(
                            "scan the QR code in WhatsApp > Linked devices > Link a device (valid {}s)",
                            valid_for.as_secs()
                        ),
                        |_| {},
                    );
                }
            }
            Step::PairCode { code, valid_for } => {
                self.pair_code_outstanding = true;
                let expires_at = now_ms() + valid_for.as_millis() as i64;
                tracing::info!(valid_secs = valid_for.as_secs(), "pair code issued");
                let _ = self.events.send(MessengerEvent::PairCode {
                    code: code.clone(),
                    expires_at,
                });
                self.publish(
                    Status::WaitingForPairCode,
                    format!(
                        "enter the code {code} in WhatsApp > Linked devices > Link with phone number instead"
                    ),
                    |_| {},
                );
            }
            Step::Publish { status, detail } => {
                tracing::info!(state = status.name(), detail = %detail, "WhatsApp linking");
                self.publish(status, detail, |_| {});
            }
            Step::Note(note) => tracing::warn!("{note}"),
            Step::Receipts {
                message_ids,
                kind,
                at,
            } => {
                for message_id in message_ids {
                    let _ = self.events.send(MessengerEvent::Receipt {
                        message_id,
                        kind,
                        at,
                    });
                }
            }
            Step::End { end: new, close } => {
                tracing::info!(
                    state = new.status().name(),
                    reason = %new.reason(),
                    "WhatsApp connection ending"
                );
                // A plain disconnect is published once its retry time is known.
                if !matches!(new, End::Retry(_)) {
                    let until = match &new {
                        End::Banned { until, .. } => *until,
                        _ => None,
                    };
                    self.publish(new.status(), new.reason().to_owned(), |s| {
                        s.banned_until = until;
                    });
                }
                if close {
                    let client = Arc::clone(client);
                    self.tasks
                        .spawn(async move { client.reconnect_immediately().await });
                }
                match end {
                    Some(old) if severity(old) >= severity(&new) => {}
                    _ => *end = Some(new),
                }
            }
        }
    }
}

/// Which end decides what follows when several arrive during one connection.
fn severity(end: &End) -> u8 {
    match end {
        End::RetryNow(_) => 0,
        End::Retry(_) => 1,
        End::Replaced(_) => 2,
        End::Outdated(_) => 3,
        End::Banned { .. } => 4,
        End::Heal(_) => 5,
    }
}

/// Prints the QR code on stderr as a block a phone can scan from the terminal.
fn print_qr(code: &str, valid_for: Duration) {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(code.as_bytes()) {
        Ok(qr) => {
            let block = qr
                .render::<Dense1x2>()
                .dark_color(Dense1x2::Light)
                .light_color(Dense1x2::Dark)
                .quiet_zone(true)
                .build();
            eprintln!(
                "\nScan in WhatsApp > Linked devices > Link a device (valid {}s):\n{block}\n",
                valid_for.as_secs()
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot draw the QR code in the terminal"),
    }
}
