//! Between two connections: the published state and its backoff wait (broken off by
//! a command), and a session that cannot be used moved aside before a fresh pairing.

use std::time::Duration;

use abtrack_proto::time::now_ms;

use super::{Supervisor, Waited};
use crate::messenger::{ConnectionState, Status};
use crate::whatsapp::{Command, MODE};

impl Supervisor {
    /// Publishes `status` with its retry time, then waits for it (or a command).
    pub(super) async fn wait_retry(
        &mut self,
        status: Status,
        reason: String,
        until: Option<i64>,
    ) -> Waited {
        let delay = match (status, until) {
            (Status::Banned, Some(until)) => {
                Duration::from_millis(until.saturating_sub(now_ms()).max(0) as u64)
                    .max(self.settings.reconnect_min)
            }
            (Status::Disconnected, _) => self.backoff.next_delay(),
            _ => self.backoff.max(),
        };
        let retry_at = now_ms() + delay.as_millis() as i64;
        tracing::warn!(
            state = status.name(),
            reason = %reason,
            retry_in_ms = delay.as_millis() as u64,
            "WhatsApp not connected; retrying later"
        );
        self.publish(status, reason, |s| {
            s.retry_at = Some(retry_at);
            s.banned_until = until;
        });
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return Waited::Elapsed,
                command = self.commands.recv() => match command {
                    Some(Command::Logout(reply)) => return Waited::Logout(reply),
                    Some(Command::Shutdown(reply)) => return Waited::Stop(Some(reply)),
                    // Not connected now: the next attempt is already planned.
                    Some(Command::Reconnect { .. }) => {}
                    Some(Command::Answered) => self.unanswered = false,
                    // The messenger is gone: nobody is left to serve.
                    None => return Waited::Stop(None),
                },
            }
        }
    }

    /// Moves the session aside and says so; keeps trying (with backoff) while the
    /// rename fails. `Break` means the gateway is stopping.
    pub(super) async fn move_aside(
        &mut self,
        reason: &str,
        label: &str,
    ) -> std::ops::ControlFlow<()> {
        self.publish(Status::LoggedOut, reason.to_owned(), |_| {});
        loop {
            match self.session.move_aside(label) {
                Ok(Some(kept)) => {
                    tracing::warn!(
                        reason = %reason,
                        kept_at = %kept.display(),
                        "moved the WhatsApp session aside (kept, not deleted); starting a fresh pairing"
                    );
                    break;
                }
                Ok(None) => {
                    tracing::info!(reason = %reason, "no session to move aside; starting a fresh pairing");
                    break;
                }
                Err(e) => {
                    tracing::error!(
                        reason = %reason,
                        error = %e,
                        session = %self.session.dir().display(),
                        "cannot move the WhatsApp session aside"
                    );
                    let why = format!("{reason}; moving the session aside failed: {e}");
                    match self.wait_retry(Status::LoggedOut, why, None).await {
                        Waited::Elapsed => {}
                        Waited::Logout(reply) => {
                            let _ = reply.send(());
                        }
                        Waited::Stop(reply) => {
                            if let Some(reply) = reply {
                                let _ = reply.send(());
                            }
                            return std::ops::ControlFlow::Break(());
                        }
                    }
                }
            }
        }
        self.backoff.reset();
        std::ops::ControlFlow::Continue(())
    }

    pub(super) fn publish(
        &self,
        status: Status,
        detail: String,
        extra: impl FnOnce(&mut ConnectionState),
    ) {
        let mut next = ConnectionState::new(status, MODE, detail);
        extra(&mut next);
        self.state.send_if_modified(|current| {
            // A time lock and the new-chat quota are the account's, not the
            // connection's: they outlive reconnects.
            next.time_lock_until = current.time_lock_until.filter(|until| *until > now_ms());
            next.new_chat_quota = current.new_chat_quota;
            let same = current.status == next.status
                && current.detail == next.detail
                && current.own_number == next.own_number
                && current.push_name == next.push_name
                && current.retry_at == next.retry_at
                && current.banned_until == next.banned_until;
            if same {
                return false;
            }
            *current = next;
            true
        });
    }
}
