//! How an outbox record becomes a sheet row: the columns, the local time, the masked
//! or full recipient, and the message text only when enabled.

use chrono::TimeZone;
use chrono_tz::Tz;
use serde_json::Value;

use abtrack_proto::mask_phone;

use crate::outbox::Record;

/// The columns every tab has, in order.
pub const HEADER: &[&str] = &[
    "Time",
    "Job ID",
    "Recipient",
    "Status",
    "Attempts",
    "Message ID",
    "Error",
];

/// The column naming the WhatsApp account, after [`HEADER`]: in every tab the logger
/// starts; a tab whose header was written without it keeps its columns.
pub const ACCOUNT: &str = "Account";

/// The media's kind and file name, after [`ACCOUNT`]: likewise only in tabs whose
/// header has it.
pub const MEDIA: &str = "Media";

/// The optional columns a tab's header has (a tab keeps the columns it was started
/// with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub account: bool,
    pub media: bool,
}

impl Columns {
    /// Every column: a tab the logger starts.
    pub const ALL: Columns = Columns {
        account: true,
        media: true,
    };

    /// The columns of a tab whose first row is `header`.
    pub fn of(header: &[Value]) -> Self {
        let account = header.get(HEADER.len()) == Some(&Value::from(ACCOUNT));
        let media = account && header.get(HEADER.len() + 1) == Some(&Value::from(MEDIA));
        Self { account, media }
    }
}

/// The message text's column, last, when enabled.
pub const MESSAGE: &str = "Message";

#[derive(Debug, Clone)]
pub struct RowFormat {
    pub time_zone: Tz,
    pub full_recipient: bool,
    pub include_message: bool,
}

impl RowFormat {
    /// The header of a tab the logger starts: with the Account and Media columns.
    pub fn header(&self) -> Vec<Value> {
        let mut header: Vec<Value> = HEADER.iter().map(|h| Value::from(*h)).collect();
        header.push(Value::from(ACCOUNT));
        header.push(Value::from(MEDIA));
        if self.include_message {
            header.push(Value::from(MESSAGE));
        }
        header
    }

    fn time(&self, ms: i64) -> String {
        self.time_zone
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    }

    /// The key a record's row is recognised by when the sheet is read back.
    pub fn record_key(&self, record: &Record) -> RowKey {
        (
            self.time(record.occurred_at),
            record.job_id.clone(),
            record.status.clone(),
            u64::from(record.attempts),
        )
    }

    /// The row of `record`, for a tab with `columns` (a tab started before a column
    /// existed goes on without it).
    pub fn row(&self, record: &Record, columns: Columns) -> Vec<Value> {
        let time = self.time(record.occurred_at);
        let recipient = if self.full_recipient {
            record
                .recipient
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            mask_phone(&record.recipient)
        };
        let error = match (
            record.error_code.is_empty(),
            record.error_message.is_empty(),
        ) {
            (true, true) => String::new(),
            (false, true) => record.error_code.clone(),
            (true, false) => record.error_message.clone(),
            (false, false) => format!("{}: {}", record.error_code, record.error_message),
        };
        let mut row = vec![
            Value::from(time),
            Value::from(record.job_id.clone()),
            Value::from(recipient),
            Value::from(record.status.clone()),
            Value::from(record.attempts),
            Value::from(record.message_id.clone()),
            Value::from(error),
        ];
        if columns.account {
            row.push(Value::from(record.account.clone()));
        }
        if columns.media {
            row.push(Value::from(record.media.clone()));
        }
        if self.include_message {
            row.push(Value::from(record.message.clone()));
        }
        row
    }
}

/// Time, job id, status and attempts (columns A, B, D, E): one outcome.
pub type RowKey = (String, String, String, u64);

/// The key of a row read back from the sheet.
pub fn row_key(row: &[Value]) -> Option<RowKey> {
    let text = |i: usize| -> Option<String> {
        match row.get(i)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    Some((text(0)?, text(1)?, text(3)?, text(4)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            job_id: "job-1".into(),
            status: "failed".into(),
            recipient: "6281234567890@s.whatsapp.net".into(),
            attempts: 3,
            message_id: String::new(),
            error_code: "not_on_whatsapp".into(),
            error_message: "62812*****890 is not on WhatsApp".into(),
            message: "Ananda tidak hadir".into(),
            // 2026-11-24T00:30:00Z
            occurred_at: 1_795_480_200_000,
            account: "sd-harapan".into(),
            media: "document: Rekap Oktober.pdf".into(),
        }
    }

    #[test]
    fn rows_use_the_time_zone_and_mask_by_default() {
        let format = RowFormat {
            time_zone: chrono_tz::Asia::Jakarta,
            full_recipient: false,
            include_message: false,
        };
        let row = format.row(&record(), Columns::ALL);
        assert_eq!(row.len(), format.header().len());
        assert_eq!(format.header()[7], "Account");
        assert_eq!(row[7], "sd-harapan");
        assert_eq!(format.header()[8], "Media");
        assert_eq!(row[8], "document: Rekap Oktober.pdf");
        assert_eq!(Columns::of(&format.header()), Columns::ALL);
        assert_eq!(row[0], "2026-11-24 07:30:00");
        assert_eq!(row[2], "62812*****890");
        assert_eq!(row[4], 3);
        assert_eq!(row[6], "not_on_whatsapp: 62812*****890 is not on WhatsApp");
        assert!(!row.iter().any(|v| v == "Ananda tidak hadir"));
        assert_eq!(row_key(&row), Some(format.record_key(&record())));
    }

    #[test]
    fn full_recipient_and_message_when_enabled() {
        let format = RowFormat {
            time_zone: chrono_tz::UTC,
            full_recipient: true,
            include_message: true,
        };
        let row = format.row(&record(), Columns::ALL);
        assert_eq!(row[0], "2026-11-24 00:30:00");
        assert_eq!(row[2], "6281234567890");
        assert_eq!(row[9], "Ananda tidak hadir");
        assert_eq!(format.header().len(), 10);
        // A tab started without the Account column keeps its columns.
        let none = Columns {
            account: false,
            media: false,
        };
        let old = format.row(&record(), none);
        assert_eq!(old.len(), 8);
        assert_eq!(old[7], "Ananda tidak hadir");
        // So does one started with the Account column, before the Media column.
        let mut header = format.header();
        header.remove(8);
        let columns = Columns::of(&header);
        assert_eq!(
            columns,
            Columns {
                account: true,
                media: false
            }
        );
        let older = format.row(&record(), columns);
        assert_eq!(older.len(), header.len());
        assert_eq!(older[8], "Ananda tidak hadir");
        // A row read back has its numbers as strings.
        let read: Vec<Value> = row
            .iter()
            .map(|v| Value::from(v.to_string().trim_matches('"').to_owned()))
            .collect();
        assert_eq!(row_key(&read), Some(format.record_key(&record())));
    }
}
