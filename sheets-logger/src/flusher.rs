//! Moves outbox records into the sheet: in batches (up to a size, or once the oldest
//! record is old enough), in the order they were recorded, removing a record only
//! after Google acknowledged its row. Rate limits and server errors back off
//! exponentially with jitter; errors only the operator can fix are reported on
//! `Watch` and retried until fixed. After a crash or an unanswered call, the sheet is
//! read back first so no row is written twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use abtrack_proto::retry::Backoff;
use abtrack_proto::time::now_ms;

use crate::outbox::Outbox;
use crate::row::{Columns, RowFormat, row_key};
use crate::sheet::{SheetClient, SheetError};
use crate::state::{LoggerState, Mode};

#[derive(Debug, Clone)]
pub struct FlushSettings {
    pub batch_size: usize,
    pub max_age: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

pub struct Flusher {
    pub outbox: Outbox,
    pub client: SheetClient,
    pub format: RowFormat,
    pub state: watch::Sender<LoggerState>,
    pub wake: Arc<Notify>,
    pub settings: FlushSettings,
}

impl Flusher {
    pub async fn run(self) {
        // Once the tab is known: whether it has the Account column.
        let mut tab = None;
        let mut verify = match self.outbox.in_flight().await {
            Ok(in_flight) => in_flight,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                true
            }
        };
        if verify {
            tracing::info!(
                "an upload was interrupted; the sheet will be checked before sending again"
            );
        }
        let mut backoff = Backoff::new(self.settings.retry_min, self.settings.retry_max);
        loop {
            let backlog = self.outbox.backlog().await.unwrap_or(0);
            self.state
                .send_if_modified(|s| std::mem::replace(&mut s.backlog, backlog) != backlog);
            if backlog == 0 {
                self.wake.notified().await;
                continue;
            }
            if (backlog as usize) < self.settings.batch_size
                && let Ok(Some(oldest)) = self.outbox.oldest_recorded_at().await
            {
                let age = Duration::from_millis((now_ms() - oldest).max(0) as u64);
                if age < self.settings.max_age {
                    tokio::select! {
                        () = tokio::time::sleep(self.settings.max_age - age) => {},
                        () = self.wake.notified() => {},
                    }
                    continue;
                }
            }
            match self.flush_once(&mut tab, &mut verify).await {
                Ok(sent) => {
                    backoff.reset();
                    let backlog = self.outbox.backlog().await.unwrap_or(0);
                    let recovered = self.state.borrow().mode == Mode::Failing;
                    if recovered {
                        tracing::info!("Google Sheets accepts rows again");
                    }
                    tracing::debug!(rows = sent, backlog, "rows appended");
                    self.state.send_modify(|s| {
                        s.mode = Mode::Ok;
                        s.last_error.clear();
                        s.backlog = backlog;
                        s.last_flush_at = Some(now_ms());
                    });
                }
                Err(error) => {
                    let operator = matches!(error, SheetError::Operator(_));
                    if matches!(error, SheetError::Uncertain(_)) {
                        verify = true;
                    }
                    if operator {
                        tab = None;
                    }
                    let wait = backoff.next_delay();
                    let message = if operator {
                        format!("{error}. Rows are kept and sent once this is fixed.")
                    } else {
                        format!(
                            "{error}; retrying in {} s, rows are kept",
                            wait.as_secs().max(1)
                        )
                    };
                    let changed = self.state.borrow().last_error != message;
                    if changed && operator {
                        tracing::error!("{message}");
                    } else if changed {
                        tracing::warn!("{message}");
                    }
                    self.state.send_modify(|s| {
                        s.mode = Mode::Failing;
                        s.last_error = message;
                    });
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Appends the oldest batch; returns how many records left the outbox.
    async fn flush_once(
        &self,
        tab: &mut Option<Columns>,
        verify: &mut bool,
    ) -> Result<usize, SheetError> {
        let columns = match *tab {
            Some(columns) => columns,
            None => *tab.insert(self.client.ensure_tab(self.format.header()).await?),
        };
        let storage = |e: crate::Error| SheetError::Transient(format!("outbox: {e}"));
        let mut batch = self
            .outbox
            .oldest(self.settings.batch_size)
            .await
            .map_err(storage)?;
        let mut removed = 0;
        if *verify {
            let present: HashSet<_> = self
                .client
                .rows()
                .await?
                .iter()
                .filter_map(|r| row_key(r))
                .collect();
            let (done, todo): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|(_, r)| present.contains(&self.format.record_key(r)));
            if !done.is_empty() {
                tracing::info!(
                    rows = done.len(),
                    "rows of the interrupted upload are already in the sheet"
                );
                removed = done.len();
                self.outbox
                    .remove(done.iter().map(|(seq, _)| *seq).collect(), now_ms())
                    .await
                    .map_err(storage)?;
            } else {
                self.outbox.set_in_flight(false).await.map_err(storage)?;
            }
            *verify = false;
            batch = todo;
        }
        if batch.is_empty() {
            return Ok(removed);
        }
        let rows = batch
            .iter()
            .map(|(_, record)| self.format.row(record, columns))
            .collect();
        self.outbox.set_in_flight(true).await.map_err(storage)?;
        match self.client.append(rows).await {
            Ok(()) => {
                self.outbox
                    .remove(batch.iter().map(|(seq, _)| *seq).collect(), now_ms())
                    .await
                    .map_err(storage)?;
                Ok(removed + batch.len())
            }
            Err(e) => {
                if !matches!(e, SheetError::Uncertain(_)) {
                    // Google answered with an error: nothing was written.
                    self.outbox.set_in_flight(false).await.map_err(storage)?;
                }
                Err(e)
            }
        }
    }
}
