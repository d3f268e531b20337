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
        let detail = match (&config.credentials, &config.spreadsheet_id) {
            (None, _) => "Google Sheets logging is off (no sheets-credentials.json); outcomes are kept in the local outbox".to_owned(),
            (Some(_), None) => "Google Sheets logging is off: no spreadsheet id (set SHEETS_SPREADSHEET_ID or spreadsheetId in config.json); outcomes are kept in the local outbox".to_owned(),
            (Some(_), Some(_)) => "Google Sheets upload is not part of this build; outcomes are kept in the local outbox".to_owned(),
        };
        Self {
            mode: Mode::Disabled,
            backlog,
            last_error: String::new(),
            detail,
            last_flush_at: None,
        }
    }
}
