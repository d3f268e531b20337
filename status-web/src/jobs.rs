//! Finding jobs: `GET /api/jobs` (by number, status, account, id and creation
//! time, newest first, a page at a time) and `GET /api/jobs.csv` (the same filter,
//! every page, as a CSV file).

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use abtrack_proto::dispatcher::v1 as dpb;
use abtrack_proto::time::{parse_rfc3339, to_timestamp};

use crate::AppState;
use crate::api::{from_dispatcher, request};
use crate::error::ApiError;
use crate::snapshot::JobView;

/// The most jobs one page holds.
const MAX_PAGE: u32 = 1000;
/// The most rows one export writes; the file says so when it stops there.
pub const MAX_EXPORT_ROWS: usize = 100_000;

#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    /// Parsed by hand so a bad value gets the usual JSON error.
    limit: Option<String>,
    /// Only this account's jobs.
    account: Option<String>,
    /// A phone number in any form.
    phone: Option<String>,
    id: Option<String>,
    /// Created at or after: RFC 3339 or milliseconds since 1970.
    from: Option<String>,
    /// Created before.
    until: Option<String>,
    /// A previous page's `nextCursor`.
    cursor: Option<String>,
}

fn statuses(text: Option<&str>) -> Result<Vec<i32>, ApiError> {
    let mut statuses = Vec::new();
    for name in text
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let status =
            dpb::JobStatus::from_str_name(&format!("JOB_STATUS_{}", name.to_ascii_uppercase()))
                .filter(|s| *s != dpb::JobStatus::Unspecified)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        Some("status"),
                        format!("status: unknown status {name:?}; use pending, processing, sent, delivered, read or failed"),
                    )
                })?;
        statuses.push(status as i32);
    }
    Ok(statuses)
}

fn time(field: &str, text: Option<&str>) -> Result<Option<prost_types::Timestamp>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let ms = parse_rfc3339(text)
        .or_else(|| text.parse::<i64>().ok().filter(|ms| *ms >= 0))
        .ok_or_else(|| {
            ApiError::bad_request(
                Some(field),
                format!("{field}: expected an RFC 3339 time like 2026-11-24T00:00:00+07:00, or milliseconds since 1970"),
            )
        })?;
    Ok(Some(to_timestamp(ms)))
}

impl JobsQuery {
    /// The search this query asks for, `limit` jobs a page.
    fn search(&self, limit: u32) -> Result<dpb::SearchJobsRequest, ApiError> {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_owned();
        Ok(dpb::SearchJobsRequest {
            statuses: statuses(self.status.as_deref())?,
            account: text(&self.account),
            phone: text(&self.phone),
            id: text(&self.id),
            created_from: time("from", self.from.as_deref())?,
            created_until: time("until", self.until.as_deref())?,
            limit,
            cursor: text(&self.cursor),
        })
    }

    fn limit(&self) -> Result<u32, ApiError> {
        match self.limit.as_deref().map(str::trim) {
            None | Some("") => Ok(50),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        Some("limit"),
                        format!("limit: expected a whole number from 1 to {MAX_PAGE}"),
                    )
                }),
        }
    }
}

/// `GET /api/jobs`: one page of the jobs the filter finds, newest created first,
/// and `nextCursor` for the page after it (`null` at the end).
pub async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<JobsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let search = query.search(query.limit()?)?;
    let mut client = state.dispatcher.clone();
    let page = client
        .search_jobs(request(search))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    let jobs: Vec<JobView> = page
        .jobs
        .iter()
        .map(|j| JobView::from_pb(j, false))
        .collect();
    // As the dispatcher last reported them: counting the whole queue again for every
    // page would cost more than the search.
    let counts = state.snapshot.borrow().queue.counts;
    let next = (!page.next_cursor.is_empty()).then_some(page.next_cursor);
    Ok(Json(
        json!({ "jobs": jobs, "counts": counts, "nextCursor": next }),
    ))
}

/// The export's columns, as its header names them.
const COLUMNS: [&str; 13] = [
    "id",
    "status",
    "createdAt",
    "to",
    "recipient",
    "account",
    "attempts",
    "sentAt",
    "deliveredAt",
    "readAt",
    "deliveryOverdue",
    "errorCode",
    "errorMessage",
];

fn row(job: &JobView) -> [String; 13] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        job.id.clone(),
        job.status.clone(),
        opt(&job.created_at),
        job.to.clone(),
        job.recipient.clone(),
        opt(&job.account),
        job.attempts.to_string(),
        opt(&job.sent_at),
        opt(&job.delivered_at),
        opt(&job.read_at),
        job.delivery_overdue.to_string(),
        job.last_error
            .as_ref()
            .map(|e| e.code.clone())
            .unwrap_or_default(),
        job.last_error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default(),
    ]
}

/// `GET /api/jobs.csv`: every job the filter finds (the same parameters as
/// `GET /api/jobs`, without `cursor` and `limit`), newest first, numbers masked
/// (unless `STATUS_WEB_FULL_NUMBERS`) and no message texts, streamed page by page, at
/// most [`MAX_EXPORT_ROWS`] rows.
pub async fn export_csv(
    State(state): State<AppState>,
    Query(query): Query<JobsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let mut search = query.search(MAX_PAGE)?;
    search.cursor.clear();
    let mut client = state.dispatcher.clone();
    // The first page is asked for before answering, so a bad filter is a JSON error.
    let first = client
        .search_jobs(request(search.clone()))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    let full_numbers = state.full_numbers;
    let view = move |job: &dpb::Job| {
        let view = JobView::from_pb(job, false);
        if full_numbers {
            view.with_full_numbers(job)
        } else {
            view
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    state.tasks.spawn(async move {
        let mut page = first;
        let mut written = 0;
        let mut header = true;
        loop {
            let mut out = csv::Writer::from_writer(Vec::new());
            if std::mem::take(&mut header) {
                let _ = out.write_record(COLUMNS);
            }
            for job in page.jobs.iter().take(MAX_EXPORT_ROWS - written) {
                // Writing into memory cannot fail.
                let _ = out.write_record(row(&view(job)).map(cell));
                written += 1;
            }
            let bytes = out.into_inner().unwrap_or_default();
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
            if page.next_cursor.is_empty() || written == MAX_EXPORT_ROWS {
                return;
            }
            search.cursor = std::mem::take(&mut page.next_cursor);
            page = match client.search_jobs(request(search.clone())).await {
                Ok(next) => next.into_inner(),
                Err(status) => {
                    // Cuts the download short, so the file is not taken as whole.
                    let _ = tx
                        .send(Err(std::io::Error::other(status.message().to_owned())))
                        .await;
                    return;
                }
            };
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"abtrack-jobs.csv\"",
            ),
        ],
        body,
    ))
}

/// A value as a spreadsheet may safely open it: one that would start a formula
/// (`=`, `+`, `-`, `@`, a tab or a carriage return first) gets a leading `'`.
fn cell(value: String) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value
    }
}
