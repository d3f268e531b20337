//! A local stand-in for Google: the OAuth token endpoint a service account uses and
//! the Sheets API calls the logger makes (`spreadsheets.get`, `batchUpdate` with
//! `addSheet`, `values.get`, `values.append`), answering as Google documents them,
//! checking the bearer token, and failing on demand.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::time::Instant;

const TOKEN: &str = "ya29.local-test-token";
pub const SERVICE_EMAIL: &str = "abtrack-logger@abtrack-test.iam.gserviceaccount.com";

/// How the fake misbehaves.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Every Sheets call answers 503 until then.
    pub unavailable_until: Option<Instant>,
    /// Every n-th append call answers 429.
    pub rate_limit_every: Option<u32>,
    /// Every Sheets call answers 403 (the sheet is not shared with the account).
    pub forbidden: bool,
    /// Appends are applied, then the answer waits this long.
    pub append_answer_delay: Duration,
}

#[derive(Debug, Default)]
struct Sheet {
    spreadsheet_id: String,
    tabs: Vec<(String, Vec<Vec<Value>>)>,
    faults: Faults,
    append_calls: u32,
    unauthorized: u32,
}

#[derive(Clone, Default)]
pub struct FakeGoogle {
    inner: Arc<Mutex<Sheet>>,
}

impl FakeGoogle {
    /// Serves on a free loopback port; returns the fake and its root URL.
    pub async fn start(spreadsheet_id: &str) -> (Self, String) {
        let fake = Self::default();
        fake.inner.lock().unwrap().spreadsheet_id = spreadsheet_id.to_owned();
        let app = Router::new()
            .route("/token", post(token))
            .fallback(sheets)
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, url)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.inner.lock().unwrap().faults = faults;
    }

    /// The rows of a tab, header included.
    pub fn rows(&self, tab: &str) -> Vec<Vec<Value>> {
        let sheet = self.inner.lock().unwrap();
        sheet
            .tabs
            .iter()
            .find(|(t, _)| t == tab)
            .map(|(_, rows)| rows.clone())
            .unwrap_or_default()
    }

    /// Puts `rows` into a tab as a person would have typed them (a sheet already in
    /// use before the logger started).
    pub fn seed(&self, tab: &str, rows: Vec<Vec<Value>>) {
        let mut sheet = self.inner.lock().unwrap();
        sheet.tabs.retain(|(t, _)| t != tab);
        sheet.tabs.push((tab.to_owned(), rows));
    }

    pub fn tabs(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .tabs
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    pub fn append_calls(&self) -> u32 {
        self.inner.lock().unwrap().append_calls
    }

    /// Calls that came without the token this fake handed out.
    pub fn unauthorized_calls(&self) -> u32 {
        self.inner.lock().unwrap().unauthorized
    }

    /// Writes a service account key file whose token endpoint is this fake.
    pub fn write_key(&self, url: &str, path: &Path) {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/test-only-service-account-key.pem"
        ))
        .unwrap();
        let key = json!({
            "type": "service_account",
            "project_id": "abtrack-test",
            "private_key_id": "0",
            "private_key": pem,
            "client_email": SERVICE_EMAIL,
            "client_id": "0",
            "auth_uri": format!("{url}/auth"),
            "token_uri": format!("{url}/token"),
        });
        std::fs::write(path, key.to_string()).unwrap();
    }
}

fn google_error(status: StatusCode, message: &str) -> Response {
    let reason = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        _ => "UNAVAILABLE",
    };
    let body =
        json!({ "error": { "code": status.as_u16(), "message": message, "status": reason } });
    (status, axum::Json(body)).into_response()
}

/// The service-account flow: a signed JWT assertion in, an access token out.
async fn token(body: Bytes) -> Response {
    let form = String::from_utf8_lossy(&body);
    let fields: HashMap<&str, &str> = form
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let grant_ok = fields
        .get("grant_type")
        .is_some_and(|g| g.contains("jwt-bearer"));
    let jwt_ok = fields
        .get("assertion")
        .is_some_and(|a| a.split('.').count() == 3);
    if !(grant_ok && jwt_ok) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    }
    axum::Json(json!({ "access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600 }))
        .into_response()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `'Log'!A1:H1` -> ("Log", Some(1), Some(1)); `'Log'!A:E` -> ("Log", None, None).
fn parse_range(range: &str) -> (String, Option<usize>, Option<usize>) {
    let (tab, cells) = range.rsplit_once('!').unwrap_or((range, ""));
    let tab = tab.trim_matches('\'').replace("''", "'");
    let row_of = |cell: &str| {
        cell.trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<usize>()
            .ok()
    };
    let (first, last) = cells.split_once(':').unwrap_or((cells, cells));
    (tab, row_of(first), row_of(last))
}

async fn sheets(
    State(fake): State<FakeGoogle>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let (delay, response) = {
        let mut sheet = fake.inner.lock().unwrap();
        if !authorized {
            sheet.unauthorized += 1;
            return google_error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials.",
            );
        }
        handle(&mut sheet, &method, uri.path(), &query, &body)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

fn handle(
    sheet: &mut Sheet,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> (Duration, Response) {
    let Some(rest) = path.strip_prefix("/v4/spreadsheets/") else {
        return (
            Duration::ZERO,
            google_error(StatusCode::NOT_FOUND, "unknown route"),
        );
    };
    let (id_part, values_part) = match rest.split_once("/values/") {
        Some((id, range)) => (id, Some(range)),
        None => (rest, None),
    };
    let (id, action) = match id_part.split_once(':') {
        Some((id, action)) => (id, Some(action)),
        None => (id_part, None),
    };
    if sheet
        .faults
        .unavailable_until
        .is_some_and(|until| Instant::now() < until)
    {
        return (
            Duration::ZERO,
            google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is currently unavailable.",
            ),
        );
    }
    if sheet.faults.forbidden {
        return (
            Duration::ZERO,
            google_error(StatusCode::FORBIDDEN, "The caller does not have permission"),
        );
    }
    if id != sheet.spreadsheet_id {
        return (
            Duration::ZERO,
            google_error(StatusCode::NOT_FOUND, "Requested entity was not found."),
        );
    }
    let tab_index = |sheet: &Sheet, tab: &str| sheet.tabs.iter().position(|(t, _)| t == tab);
    match (method.as_str(), action, values_part) {
        ("GET", None, None) => {
            let sheets: Vec<Value> = sheet
                .tabs
                .iter()
                .map(|(t, _)| json!({ "properties": { "title": t } }))
                .collect();
            (
                Duration::ZERO,
                axum::Json(json!({ "spreadsheetId": id, "sheets": sheets })).into_response(),
            )
        }
        ("POST", Some("batchUpdate"), None) => {
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            let mut replies = Vec::new();
            for r in request["requests"].as_array().cloned().unwrap_or_default() {
                let Some(title) = r["addSheet"]["properties"]["title"].as_str() else {
                    return (
                        Duration::ZERO,
                        google_error(StatusCode::BAD_REQUEST, "only addSheet is supported here"),
                    );
                };
                if tab_index(sheet, title).is_some() {
                    return (
                        Duration::ZERO,
                        google_error(
                            StatusCode::BAD_REQUEST,
                            &format!("A sheet with the name \"{title}\" already exists."),
                        ),
                    );
                }
                sheet.tabs.push((title.to_owned(), Vec::new()));
                replies.push(json!({ "addSheet": { "properties": { "title": title } } }));
            }
            (
                Duration::ZERO,
                axum::Json(json!({ "spreadsheetId": id, "replies": replies })).into_response(),
            )
        }
        ("GET", None, Some(range)) => {
            let range = percent_decode(range);
            let (tab, first, last) = parse_range(&range);
            let Some(index) = tab_index(sheet, &tab) else {
                return (
                    Duration::ZERO,
                    google_error(
                        StatusCode::BAD_REQUEST,
                        &format!("Unable to parse range: {range}"),
                    ),
                );
            };
            let rows = &sheet.tabs[index].1;
            let from = first.unwrap_or(1).saturating_sub(1).min(rows.len());
            let to = last.unwrap_or(rows.len()).min(rows.len());
            // Google returns formatted values: numbers come back as strings.
            let values: Vec<Value> = rows[from..to.max(from)]
                .iter()
                .map(|row| {
                    Value::Array(
                        row.iter()
                            .map(|v| {
                                Value::from(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            })
                            .collect(),
                    )
                })
                .collect();
            let mut answer = json!({ "range": range, "majorDimension": "ROWS" });
            if !values.is_empty() {
                answer["values"] = Value::Array(values);
            }
            (Duration::ZERO, axum::Json(answer).into_response())
        }
        ("POST", None, Some(range_action)) => {
            let Some(range) = range_action.strip_suffix(":append") else {
                return (
                    Duration::ZERO,
                    google_error(StatusCode::NOT_FOUND, "unknown values action"),
                );
            };
            sheet.append_calls += 1;
            if let Some(n) = sheet.faults.rate_limit_every
                && sheet.append_calls.is_multiple_of(n)
            {
                return (
                    Duration::ZERO,
                    google_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Quota exceeded for quota metric 'Write requests'",
                    ),
                );
            }
            if query.get("valueInputOption").map(String::as_str) != Some("RAW")
                || query.get("insertDataOption").map(String::as_str) != Some("INSERT_ROWS")
            {
                return (
                    Duration::ZERO,
                    google_error(
                        StatusCode::BAD_REQUEST,
                        "expected valueInputOption=RAW and insertDataOption=INSERT_ROWS",
                    ),
                );
            }
            let range = percent_decode(range);
            let (tab, ..) = parse_range(&range);
            let Some(index) = tab_index(sheet, &tab) else {
                return (
                    Duration::ZERO,
                    google_error(
                        StatusCode::BAD_REQUEST,
                        &format!("Unable to parse range: {range}"),
                    ),
                );
            };
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            let Some(new_rows) = request["values"].as_array() else {
                return (
                    Duration::ZERO,
                    google_error(StatusCode::BAD_REQUEST, "values is required"),
                );
            };
            let rows = &mut sheet.tabs[index].1;
            let start = rows.len() + 1;
            for row in new_rows {
                rows.push(row.as_array().cloned().unwrap_or_default());
            }
            let end = rows.len();
            let answer = json!({
                "spreadsheetId": id,
                "tableRange": format!("'{tab}'!A1:H{}", start - 1),
                "updates": {
                    "spreadsheetId": id,
                    "updatedRange": format!("'{tab}'!A{start}:H{end}"),
                    "updatedRows": new_rows.len(),
                }
            });
            (
                sheet.faults.append_answer_delay,
                axum::Json(answer).into_response(),
            )
        }
        _ => (
            Duration::ZERO,
            google_error(StatusCode::NOT_FOUND, "unknown route"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_escapes() {
        assert_eq!(percent_decode("%27Log%27%21A%3AH"), "'Log'!A:H");
        assert_eq!(parse_range("'Log'!A1:H1"), ("Log".into(), Some(1), Some(1)));
        assert_eq!(parse_range("'It''s'!A:E"), ("It's".into(), None, None));
    }
}
