//! The spreadsheet, through `google-sheets4`: makes sure the tab and its header
//! exist, appends rows, reads rows back, and turns Google's errors into either
//! "retry later" or a sentence that tells the operator what to fix.

use std::sync::Arc;
use std::time::Duration;

use google_sheets4::Sheets;
use google_sheets4::api::{
    AddSheetRequest, BatchUpdateSpreadsheetRequest, Request, SheetProperties, ValueRange,
};
use google_sheets4::hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use google_sheets4::hyper_util::client::legacy::Client;
use google_sheets4::hyper_util::client::legacy::connect::HttpConnector;
use google_sheets4::hyper_util::rt::TokioExecutor;
use google_sheets4::yup_oauth2::client::CustomHyperClientBuilder;
use google_sheets4::yup_oauth2::{ServiceAccountAuthenticator, ServiceAccountKey};
use serde_json::Value;

use crate::row::Columns;

/// The longest one call to Google may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SheetError {
    /// Rate limits, server errors, network trouble: try again later.
    #[error("{0}")]
    Transient(String),
    /// The call may or may not have reached Google (timeout, broken connection):
    /// the rows must be looked for in the sheet before they are sent again.
    #[error("{0}")]
    Uncertain(String),
    /// Something only the operator can fix; the message says what.
    #[error("{0}")]
    Operator(String),
}

pub struct SheetClient {
    hub: Sheets<HttpsConnector<HttpConnector>>,
    spreadsheet_id: String,
    tab: String,
    service_email: String,
}

impl SheetClient {
    /// Builds the client. `api_url` is Google's root URL, or a local server in tests.
    pub async fn new(
        key: ServiceAccountKey,
        api_url: &str,
        spreadsheet_id: &str,
        tab: &str,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        // The token client and the Sheets client carry different body types.
        let token_client =
            Client::builder(TokioExecutor::new()).build::<_, String>(connector.clone());
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let service_email = key.client_email.clone();
        let auth = ServiceAccountAuthenticator::with_client(
            key,
            CustomHyperClientBuilder::from(token_client),
        )
        .build()
        .await
        .map_err(|e| format!("cannot use the service account key: {e}"))?;
        let mut hub = Sheets::new(client, auth);
        let root = format!("{}/", api_url.trim_end_matches('/'));
        hub.root_url(root.clone());
        hub.base_url(root);
        Ok(Self {
            hub,
            spreadsheet_id: spreadsheet_id.to_owned(),
            tab: tab.to_owned(),
            service_email,
        })
    }

    /// The tab's whole-column range, quoted as A1 notation needs: `'Log'!A:I`.
    fn range(&self, columns: &str) -> String {
        format!("'{}'!{columns}", self.tab.replace('\'', "''"))
    }

    /// Creates the tab when it is missing and writes `header` when it is empty.
    /// Answers which optional columns the tab's header has (all when written now; a
    /// tab started before a column existed has not that one).
    pub async fn ensure_tab(&self, header: Vec<Value>) -> Result<Columns, SheetError> {
        let call = self
            .hub
            .spreadsheets()
            .get(&self.spreadsheet_id)
            .param("fields", "sheets.properties.title");
        let (_, spreadsheet) = self.timed(call.doit()).await?;
        let exists = spreadsheet.sheets.unwrap_or_default().iter().any(|s| {
            s.properties.as_ref().and_then(|p| p.title.as_deref()) == Some(self.tab.as_str())
        });
        if !exists {
            let request = BatchUpdateSpreadsheetRequest {
                requests: Some(vec![Request {
                    add_sheet: Some(AddSheetRequest {
                        properties: Some(SheetProperties {
                            title: Some(self.tab.clone()),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            };
            self.timed(
                self.hub
                    .spreadsheets()
                    .batch_update(request, &self.spreadsheet_id)
                    .doit(),
            )
            .await?;
            tracing::info!(tab = %self.tab, "created the sheet tab");
        }
        let (_, first) = self
            .timed(
                self.hub
                    .spreadsheets()
                    .values_get(&self.spreadsheet_id, &self.range("A1:J1"))
                    .doit(),
            )
            .await?;
        let first = first.values.unwrap_or_default();
        let Some(existing) = first.first().filter(|row| !row.is_empty()) else {
            self.append(vec![header]).await?;
            tracing::info!(tab = %self.tab, "wrote the header row");
            return Ok(Columns::ALL);
        };
        let columns = Columns::of(existing);
        if columns != Columns::ALL {
            tracing::info!(tab = %self.tab, account = columns.account, media = columns.media, "the tab was started without some of today's columns; rows keep its columns");
        }
        Ok(columns)
    }

    /// Appends rows after the last row of the tab's table, as raw values.
    pub async fn append(&self, rows: Vec<Vec<Value>>) -> Result<(), SheetError> {
        let body = ValueRange {
            values: Some(rows),
            major_dimension: Some("ROWS".into()),
            range: None,
        };
        let call = self
            .hub
            .spreadsheets()
            .values_append(body, &self.spreadsheet_id, &self.range("A:J"))
            .value_input_option("RAW")
            .insert_data_option("INSERT_ROWS");
        self.timed(call.doit()).await?;
        Ok(())
    }

    /// Every row of the tab (columns A to E: enough to recognise a row).
    pub async fn rows(&self) -> Result<Vec<Vec<Value>>, SheetError> {
        let call = self
            .hub
            .spreadsheets()
            .values_get(&self.spreadsheet_id, &self.range("A:E"));
        let (_, values) = self.timed(call.doit()).await?;
        Ok(values.values.unwrap_or_default())
    }

    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = google_sheets4::Result<T>>,
    ) -> Result<T, SheetError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(SheetError::Uncertain(format!(
                "Google Sheets did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    fn classify(&self, error: google_sheets4::Error) -> SheetError {
        use google_sheets4::Error as E;
        match error {
            E::BadRequest(body) => {
                let code = body["error"]["code"].as_u64().unwrap_or(400) as u16;
                let message = body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.by_status(code, &message)
            }
            E::Failure(response) => self.by_status(response.status().as_u16(), ""),
            E::MissingToken(e) => {
                let text = e.to_string();
                if [
                    "invalid_grant",
                    "invalid_client",
                    "unauthorized_client",
                    "invalid_request",
                ]
                .iter()
                .any(|code| text.contains(code))
                {
                    SheetError::Operator(format!(
                        "Google refused the service account key ({text}): check sheets-credentials.json, or create a new key"
                    ))
                } else {
                    SheetError::Transient(format!("cannot get an access token from Google: {text}"))
                }
            }
            E::HttpError(e) => SheetError::Uncertain(format!("cannot reach Google Sheets: {e}")),
            other => SheetError::Transient(format!("Google Sheets call failed: {other}")),
        }
    }

    fn by_status(&self, code: u16, message: &str) -> SheetError {
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        match code {
            429 => SheetError::Transient(format!("Google Sheets rate limit (429){detail}")),
            500..=599 => {
                SheetError::Transient(format!("Google Sheets server error ({code}){detail}"))
            }
            401 => SheetError::Operator(format!(
                "Google rejected the credentials (401){detail}; check sheets-credentials.json"
            )),
            403 if message.contains("has not been used") || message.contains("is disabled") => {
                SheetError::Operator(format!(
                    "the Google Sheets API is not enabled for the service account's project (403){detail}; enable it in the Google Cloud console"
                ))
            }
            403 => SheetError::Operator(format!(
                "Google Sheets refused access (403): share the spreadsheet with {} as Editor{detail}",
                self.service_email
            )),
            404 => SheetError::Operator(format!(
                "spreadsheet {} was not found (404): check SHEETS_SPREADSHEET_ID or spreadsheetId in config.json{detail}",
                self.spreadsheet_id
            )),
            400 => SheetError::Operator(format!(
                "Google Sheets rejected the request (400){detail}; check the tab name (SHEETS_TAB={})",
                self.tab
            )),
            other => SheetError::Operator(format!("Google Sheets answered {other}{detail}")),
        }
    }
}
