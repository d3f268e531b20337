//! The operator's pause switch, kept in a file in the data folder so a paused queue
//! stays paused across restarts.

use std::path::PathBuf;

use tokio::sync::watch;

use crate::error::Result;
use crate::events::Events;

#[derive(Clone)]
pub struct PauseSwitch {
    path: PathBuf,
    tx: watch::Sender<bool>,
    events: Events,
}

impl PauseSwitch {
    /// Reads the switch from `path` (present means paused).
    pub fn load(path: PathBuf, events: Events) -> Self {
        let paused = path.exists();
        events.update_state(|s| s.paused = paused);
        Self {
            path,
            tx: watch::Sender::new(paused),
            events,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    pub async fn set(&self, paused: bool) -> Result<()> {
        if paused {
            tokio::fs::write(&self.path, b"paused by an operator\n").await?;
        } else {
            match tokio::fs::remove_file(&self.path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        if self.tx.send_replace(paused) != paused {
            tracing::info!(
                paused,
                "queue {}",
                if paused {
                    "paused by an operator"
                } else {
                    "resumed"
                }
            );
        }
        self.events.update_state(|s| s.paused = paused);
        Ok(())
    }
}
