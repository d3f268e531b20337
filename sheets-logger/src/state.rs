//! What the logger reports on `Watch`: whether Sheets is in use, the backlog, and
//! what the operator should fix.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No Sheets credentials: records stay in the outbox.
    Disabled,
    Ok,
    Failing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerState {
    pub mode: Mode,
    pub backlog: u64,
    pub last_error: String,
    pub detail: String,
    pub last_flush_at: Option<i64>,
}

impl LoggerState {
    /// The state at start for the given configuration.
    pub fn initial(config: &crate::Config, backlog: u64) -> Self {
        let (mode, detail) = match (&config.target, &config.disabled_reason) {
            (Some(target), _) => (
                Mode::Ok,
                format!(
                    "logging to spreadsheet {} (tab {}) as {}",
                    target.spreadsheet_id, config.tab, target.key.client_email
                ),
            ),
            (None, reason) => (
                Mode::Disabled,
                format!(
                    "Google Sheets logging is off ({}); outcomes are kept in the local outbox",
                    reason.as_deref().unwrap_or("not configured")
                ),
            ),
        };
        Self {
            mode,
            backlog,
            last_error: String::new(),
            detail,
            last_flush_at: None,
        }
    }
}
