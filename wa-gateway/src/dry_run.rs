//! The dry-run messenger (`WA_MODE=dry-run`): accepts every message and appends it to
//! a JSONL file, which end-to-end and chaos tests count. Nothing reaches WhatsApp.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use abtrack_proto::Jid;
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::now_ms;

use crate::error::{Error, Result};
use crate::messenger::{
    Accepted, ConnectionState, Messenger, MessengerEvent, NumberCheck, Outgoing, ReceiptKind,
    Status,
};

/// How long after a send the simulated receipts arrive.
const RECEIPT_DELAY: Duration = Duration::from_millis(200);

pub struct DryRunMessenger {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    written: Arc<Mutex<HashSet<String>>>,
    not_on_whatsapp: HashSet<String>,
    receipts: bool,
    answer_delay: Duration,
    state: watch::Sender<ConnectionState>,
    events: broadcast::Sender<MessengerEvent>,
    /// Runs the simulated receipts.
    tasks: Tasks,
}

impl DryRunMessenger {
    /// Opens the JSONL file, remembering the message ids it already holds so a
    /// message is never written twice.
    pub fn open(path: &Path, not_on_whatsapp: Vec<String>, receipts: bool) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut written = HashSet::new();
        if path.exists() {
            for line in BufReader::new(File::open(path)?).lines() {
                let line = line?;
                // A line cut short by a crash has no complete record; skip it.
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(id) = value.get("message_id").and_then(|v| v.as_str())
                {
                    written.insert(id.to_owned());
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        // Start on a fresh line even if the last write was cut short.
        if std::fs::metadata(path)?.len() > 0 {
            let content = std::fs::read(path)?;
            if content.last() != Some(&b'\n') {
                file.write_all(b"\n")?;
            }
        }
        let state = ConnectionState::new(
            Status::Connected,
            "dry-run",
            format!(
                "dry-run mode: messages are written to {}, nothing reaches WhatsApp",
                path.display()
            ),
        );
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
            written: Arc::new(Mutex::new(written)),
            not_on_whatsapp: not_on_whatsapp.into_iter().collect(),
            receipts,
            answer_delay: Duration::ZERO,
            state: watch::Sender::new(state),
            events: broadcast::Sender::new(1024),
            tasks: Tasks::new(),
        })
    }

    /// Waits `delay` after writing each message before answering: the window in
    /// which a crash leaves a message out but its answer unrecorded (crash tests).
    /// Runs the simulated receipts as `tasks` (the service's), so they stop with it.
    pub fn with_tasks(mut self, tasks: &Tasks) -> Self {
        self.tasks = tasks.clone();
        self
    }

    pub fn with_answer_delay(mut self, delay: Duration) -> Self {
        self.answer_delay = delay;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Messenger for DryRunMessenger {
    fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    fn events(&self) -> broadcast::Receiver<MessengerEvent> {
        self.events.subscribe()
    }

    async fn is_on_whatsapp(&self, jid: &Jid) -> Result<NumberCheck> {
        Ok(NumberCheck {
            on_whatsapp: !self.not_on_whatsapp.contains(&jid.to_string()),
            lid: None,
        })
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted> {
        let mut line = serde_json::json!({
            "at": abtrack_proto::time::rfc3339(now_ms()),
            "job_id": message.job_id,
            "message_id": message.message_id,
            "to": message.to.to_string(),
            "text": message.text,
        });
        if let Some(media) = &message.media {
            // What the recipient would get, and the digest of its bytes to compare.
            let path = media.path().to_owned();
            let sha256 = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
                use sha2::{Digest as _, Sha256};
                let mut hash = Sha256::new();
                use std::io::Read as _;
                let mut file = std::fs::File::open(path)?;
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let n = file.read(&mut buffer)?;
                    if n == 0 {
                        break;
                    }
                    hash.update(&buffer[..n]);
                }
                Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
            })
            .await
            .map_err(|e| Error::Internal(format!("dry-run digest task failed: {e}")))??;
            line["media"] = serde_json::json!({
                "kind": media.kind.as_str(),
                "mimeType": media.mime_type,
                "fileName": media.file_name,
                "size": media.size,
                "sha256": sha256,
            });
        }
        let line = line.to_string();
        let file = Arc::clone(&self.file);
        let written = Arc::clone(&self.written);
        let id = message.message_id.clone();
        let fresh = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            let mut written = written.lock().unwrap_or_else(|p| p.into_inner());
            if written.contains(&id) {
                return Ok(false);
            }
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(format!("{line}\n").as_bytes())?;
            file.sync_data()?;
            written.insert(id);
            Ok(true)
        })
        .await
        .map_err(|e| Error::Internal(format!("dry-run write task failed: {e}")))??;
        if !self.answer_delay.is_zero() {
            tokio::time::sleep(self.answer_delay).await;
        }
        if fresh && self.receipts {
            let events = self.events.clone();
            let message_id = message.message_id.clone();
            self.tasks.spawn(async move {
                for kind in [ReceiptKind::Delivered, ReceiptKind::Read] {
                    tokio::time::sleep(RECEIPT_DELAY).await;
                    let _ = events.send(MessengerEvent::Receipt {
                        message_id: message_id.clone(),
                        kind,
                        at: now_ms(),
                    });
                }
            });
        }
        // Written to the file is this mode's "accepted by the server".
        Ok(Accepted { at: now_ms() })
    }

    async fn request_pair_code(&self, _phone_digits: &str) -> Result<String> {
        Err(Error::Unsupported(
            "dry-run mode has no WhatsApp session to link".into(),
        ))
    }

    async fn logout(&self) -> Result<()> {
        // There is no session; the state stays connected.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(job: &str, id: &str) -> Outgoing {
        Outgoing {
            new_chat: false,
            media: None,
            job_id: job.into(),
            message_id: id.into(),
            to: Jid::User("6281234567890".into()),
            text: "Ananda hadir pukul 07:02".into(),
        }
    }

    #[tokio::test]
    async fn writes_each_message_id_once_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        {
            let m = DryRunMessenger::open(&path, vec![], false).unwrap();
            m.send(&outgoing("a", "1")).await.unwrap();
            m.send(&outgoing("a", "1")).await.unwrap();
            m.send(&outgoing("b", "2")).await.unwrap();
        }
        // A torn last line, as a crash mid-write leaves it.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"job_id\":\"c\",\"mess").unwrap();
        drop(f);
        let m = DryRunMessenger::open(&path, vec![], false).unwrap();
        m.send(&outgoing("b", "2")).await.unwrap();
        m.send(&outgoing("c", "3")).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["message_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }

    #[tokio::test]
    async fn reports_listed_numbers_as_not_on_whatsapp() {
        let dir = tempfile::tempdir().unwrap();
        let m = DryRunMessenger::open(
            &dir.path().join("x.jsonl"),
            vec!["6281200000000@s.whatsapp.net".into()],
            false,
        )
        .unwrap();
        assert!(
            !m.is_on_whatsapp(&Jid::User("6281200000000".into()))
                .await
                .unwrap()
                .on_whatsapp
        );
        assert!(
            m.is_on_whatsapp(&Jid::User("6281200000001".into()))
                .await
                .unwrap()
                .on_whatsapp
        );
        assert_eq!(m.state().borrow().status, Status::Connected);
    }
}
