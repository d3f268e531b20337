//! The REST API: status, one job, enqueueing, retry, pause and resume, the gateway's
//! pairing and session reset, and dismissing the services' notices (finding jobs is
//! [`crate::jobs`]).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tonic::Request;

use abtrack_proto::dispatcher::v1 as dpb;
use abtrack_proto::gateway::v1 as gpb;
use abtrack_proto::time::{parse_rfc3339, to_timestamp};
use abtrack_proto::token::TokenChannel;

use crate::AppState;
use crate::error::ApiError;
use crate::snapshot::{JobView, Service};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const MESSAGE_FIELDS: &[&str] = &["to", "message", "sendAt", "id", "account", "media"];
const MEDIA_FIELDS: &[&str] = &["url", "data", "mimeType", "fileName"];

/// The largest `POST /api/messages` body: inline media at its limit, in base64,
/// with room for the rest.
pub const MAX_MESSAGE_BODY: usize = abtrack_proto::media::MAX_INLINE_BYTES / 3 * 4 + 256 * 1024;

pub(crate) fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

pub(crate) fn from_dispatcher(status: tonic::Status) -> ApiError {
    ApiError::from_service(Service::Dispatcher, status)
}

fn from_gateway(status: tonic::Status) -> ApiError {
    ApiError::from_service(Service::Gateway, status)
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = state.snapshot.borrow().clone();
    Json(snapshot)
}

/// `POST /api/messages`: `{"to": "...", "message": "...", "sendAt"?: RFC 3339 or
/// epoch milliseconds, "id"?: "..."}`.
pub async fn enqueue(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(body_error)?;
    let enqueue = parse_message(&body)?;
    let mut client = state.dispatcher.clone();
    let response = client
        .enqueue(request(enqueue))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    let job = response.job.unwrap_or_default();
    // A repeated id answers with the existing job.
    let code = if response.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(JobView::from_pb(&job, false))))
}

/// An oversized or broken body gets the same JSON error shape as a bad field.
fn body_error(rejection: BytesRejection) -> ApiError {
    ApiError {
        status: rejection.status(),
        field: None,
        message: format!("body: {}", rejection.body_text().to_lowercase()),
    }
}

/// Turns a request body into an enqueue request; every error names its field.
pub fn parse_message(body: &[u8]) -> Result<dpb::EnqueueRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(None, format!("body is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request(
            None,
            "body must be a JSON object with \"to\" and \"message\"",
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !MESSAGE_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(
            Some(unknown),
            format!(
                "{unknown}: unknown field; expected {}",
                MESSAGE_FIELDS.join(", ")
            ),
        ));
    }
    let to = required_string(&object, "to")?;
    let media = match object.get("media") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_media(value)?),
    };
    // The caption of media may be left out.
    let message = match (&media, object.get("message")) {
        (Some(_), None | Some(Value::Null)) => String::new(),
        _ => required_string(&object, "message")?,
    };
    let optional = |field: &str| match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(ApiError::bad_request(
            Some(field),
            format!("{field}: must be a string"),
        )),
    };
    let id = optional("id")?;
    let account = optional("account")?;
    let send_at = match object.get("sendAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_rfc3339(text).ok_or_else(|| {
            ApiError::bad_request(
                Some("sendAt"),
                "sendAt: expected an RFC 3339 time like 2026-11-24T07:00:00+07:00",
            )
        })?),
        Some(Value::Number(n)) => Some(n.as_i64().filter(|ms| *ms >= 0).ok_or_else(|| {
            ApiError::bad_request(
                Some("sendAt"),
                "sendAt: expected milliseconds since 1970 as a whole number",
            )
        })?),
        Some(_) => {
            return Err(ApiError::bad_request(
                Some("sendAt"),
                "sendAt: expected an RFC 3339 string or milliseconds since 1970",
            ));
        }
    };
    Ok(dpb::EnqueueRequest {
        to,
        message,
        send_at: send_at.map(to_timestamp),
        id,
        account,
        media,
    })
}

/// `media`: `{"url": "https://…" | "gs://…"}` or `{"data": "<base64>"}`, with
/// optional `mimeType` and `fileName`.
fn parse_media(value: &Value) -> Result<dpb::NewMedia, ApiError> {
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request(
            Some("media"),
            "media: must be an object with url or data, and optional mimeType and fileName",
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !MEDIA_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            Some(&format!("media.{unknown}")),
            format!(
                "media.{unknown}: unknown field; expected {}",
                MEDIA_FIELDS.join(", ")
            ),
        ));
    }
    let string = |field: &str| match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(ApiError::bad_request(
            Some(&format!("media.{field}")),
            format!("media.{field}: must be a string, not {}", json_type(other)),
        )),
    };
    let encoded = string("data")?;
    let data = if encoded.is_empty() {
        Vec::new()
    } else {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| {
                ApiError::bad_request(
                    Some("media.data"),
                    format!("media.data: is not base64: {e}"),
                )
            })?
    };
    Ok(dpb::NewMedia {
        url: string("url")?,
        data,
        mime_type: string("mimeType")?,
        file_name: string("fileName")?,
    })
}

fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(ApiError::bad_request(
            Some(field),
            format!("{field}: is required"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ApiError::bad_request(
            Some(field),
            format!("{field}: must be a string, not {}", json_type(other)),
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut client = state.dispatcher.clone();
    let job = client
        .get_job(request(dpb::GetJobRequest { id }))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    let view = JobView::from_pb(&job, true);
    Ok(Json(if state.full_numbers {
        view.with_full_numbers(&job)
    } else {
        view
    }))
}

pub async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut client = state.dispatcher.clone();
    let job = client
        .retry(request(dpb::RetryRequest { id }))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    Ok(Json(JobView::from_pb(&job, false)))
}

pub async fn pause(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut client = state.dispatcher.clone();
    let s = client
        .pause(request(dpb::PauseRequest {}))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    Ok(Json(
        json!({ "paused": s.paused, "gatewayReady": s.gateway_ready }),
    ))
}

pub async fn resume(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut client = state.dispatcher.clone();
    let s = client
        .resume(request(dpb::ResumeRequest {}))
        .await
        .map_err(from_dispatcher)?
        .into_inner();
    Ok(Json(
        json!({ "paused": s.paused, "gatewayReady": s.gateway_ready }),
    ))
}

/// `?account=<name>` on the gateway routes: which account's gateway; absent, the
/// default account's.
#[derive(Debug, Deserialize)]
pub struct AccountQuery {
    account: Option<String>,
}

impl AccountQuery {
    /// The gateway of the account asked for; `404` naming the accounts when there is
    /// no such account.
    fn gateway(
        &self,
        state: &AppState,
    ) -> Result<(String, gpb::gateway_client::GatewayClient<TokenChannel>), ApiError> {
        let found = match self.account.as_deref().filter(|a| !a.is_empty()) {
            None => state.gateways.first(),
            Some(name) => state.gateways.iter().find(|(n, _)| n == name),
        };
        found.cloned().ok_or_else(|| {
            let names: Vec<&str> = state.gateways.iter().map(|(n, _)| n.as_str()).collect();
            ApiError {
                status: StatusCode::NOT_FOUND,
                field: Some("account".into()),
                message: format!(
                    "account: no account {:?}; the accounts are: {}",
                    self.account.as_deref().unwrap_or_default(),
                    names.join(", ")
                ),
            }
        })
    }
}

/// `POST /api/gateway/pair-code[?account=<name>]`: `{"phone": "62812..."}`; answers
/// `{"code": "ABCD-EFGH"}` to be entered on the phone.
pub async fn pair_code(
    State(state): State<AppState>,
    Query(account): Query<AccountQuery>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let (_, mut client) = account.gateway(&state)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(None, format!("body is not valid JSON: {e}")))?;
    let phone = match &value {
        Value::Object(object) => required_string(object, "phone")?,
        _ => {
            return Err(ApiError::bad_request(
                None,
                "body must be a JSON object with \"phone\"",
            ));
        }
    };
    if phone.trim().is_empty() {
        return Err(ApiError::bad_request(Some("phone"), "phone: is required"));
    }
    let response = client
        .request_pair_code(request(gpb::RequestPairCodeRequest { phone }))
        .await
        .map_err(from_gateway)?
        .into_inner();
    Ok(Json(json!({ "code": response.code })))
}

/// `POST /api/gateway/logout[?account=<name>]`: drops that account's WhatsApp
/// session; a fresh pairing starts.
pub async fn reset_session(
    State(state): State<AppState>,
    Query(account): Query<AccountQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let (name, mut client) = account.gateway(&state)?;
    client
        .logout(request(gpb::LogoutRequest {}))
        .await
        .map_err(from_gateway)?;
    tracing::warn!(account = %name, "WhatsApp session reset from the dashboard");
    Ok(Json(json!({ "reset": true })))
}

/// `POST /api/notices/dismiss`: `{"service": "wa-gateway", "id": "..."}`; answers
/// `{"dismissed": true}` once the snapshot no longer shows the notice.
pub async fn dismiss_notice(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(body_error)?;
    let (service, id) = parse_dismiss(&body)?;
    state
        .notices
        .dismiss(service, id.clone())
        .await
        .map_err(|status| {
            if status.code() == tonic::Code::NotFound {
                ApiError::not_found(format!("no notice {id:?} on the {}", service.name()))
            } else {
                ApiError::from_service(service, status)
            }
        })?;
    Ok(Json(json!({ "dismissed": true })))
}

/// Reads `{"service": "...", "id": "..."}`; other fields are ignored.
pub fn parse_dismiss(body: &[u8]) -> Result<(Service, String), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(None, format!("body is not valid JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request(
            None,
            "body must be a JSON object with \"service\" and \"id\"",
        ));
    };
    let name = required_string(&object, "service")?;
    let service = Service::from_name(&name).ok_or_else(|| {
        ApiError::bad_request(
            Some("service"),
            format!(
                "service: unknown service {name:?}; use {}",
                Service::ALL.map(Service::name).join(", ")
            ),
        )
    })?;
    let id = required_string(&object, "id")?;
    if id.trim().is_empty() {
        return Err(ApiError::bad_request(Some("id"), "id: is required"));
    }
    Ok((service, id))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see GET /api/status, /api/jobs, POST /api/messages")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> Option<String> {
        parse_message(body.as_bytes()).unwrap_err().field
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Any bytes at all get an answer, never a panic.
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Err(e) = parse_message(&body) {
                proptest::prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                proptest::prop_assert!(!e.message.is_empty());
            }
        }

        /// A JSON object of any values is accepted or refused naming its field.
        #[test]
        fn any_object_names_the_field_it_refuses(
            to in json_value(),
            message in json_value(),
            send_at in json_value(),
            id in json_value(),
        ) {
            let body = json!({"to": to, "message": message, "sendAt": send_at, "id": id});
            match parse_message(body.to_string().as_bytes()) {
                Ok(request) => {
                    proptest::prop_assert_eq!(Some(request.to.as_str()), to.as_str());
                    proptest::prop_assert_eq!(Some(request.message.as_str()), message.as_str());
                }
                Err(e) => {
                    let field = e.field.clone().unwrap_or_default();
                    proptest::prop_assert!(MESSAGE_FIELDS.contains(&field.as_str()), "{e:?}");
                    proptest::prop_assert!(e.message.starts_with(&format!("{field}: ")), "{e:?}");
                }
            }
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            "[0-9+ -]{0,16}".prop_map(Value::from),
            Just(json!([1, "a"])),
            Just(json!({"nested": true})),
        ]
    }

    #[test]
    fn bad_bodies_name_their_field() {
        assert_eq!(field_of(r#"{"message": "hi"}"#).as_deref(), Some("to"));
        assert_eq!(
            field_of(r#"{"to": null, "message": "hi"}"#).as_deref(),
            Some("to")
        );
        assert_eq!(
            field_of(r#"{"to": 62812, "message": "hi"}"#).as_deref(),
            Some("to")
        );
        assert_eq!(
            field_of(r#"{"to": "0812", "message": ["hi"]}"#).as_deref(),
            Some("message")
        );
        assert_eq!(
            field_of(r#"{"to": "0812", "message": "hi", "phone": "1"}"#).as_deref(),
            Some("phone")
        );
        assert_eq!(
            field_of(r#"{"to": "0812", "message": "hi", "sendAt": "soon"}"#).as_deref(),
            Some("sendAt")
        );
        assert_eq!(
            field_of(r#"{"to": "0812", "message": "hi", "sendAt": -5}"#).as_deref(),
            Some("sendAt")
        );
        assert_eq!(
            field_of(r#"{"to": "0812", "message": "hi", "id": 7}"#).as_deref(),
            Some("id")
        );
        assert_eq!(field_of("not json"), None);
        assert_eq!(field_of("[1, 2]"), None);
        let err = parse_message(br#"{"to": true, "message": "x"}"#).unwrap_err();
        assert_eq!(err.message, "to: must be a string, not a boolean");
    }

    #[test]
    fn dismissals_name_the_field_at_fault() {
        let field = |body: &str| parse_dismiss(body.as_bytes()).unwrap_err().field;
        assert_eq!(
            parse_dismiss(
                br#"{"service": "wa-gateway", "id": "20261201T010203.004Z", "extra": 1}"#
            )
            .unwrap(),
            (Service::Gateway, "20261201T010203.004Z".to_owned())
        );
        for (name, service) in [
            ("dispatcher", Service::Dispatcher),
            ("sheets-logger", Service::Logger),
        ] {
            let body = json!({"service": name, "id": "x"}).to_string();
            assert_eq!(parse_dismiss(body.as_bytes()).unwrap().0, service);
        }
        for bad in [
            r#"{"id": "x"}"#,
            r#"{"service": "gateway", "id": "x"}"#,
            r#"{"service": "WA-GATEWAY", "id": "x"}"#,
            r#"{"service": 3, "id": "x"}"#,
            r#"{"service": "", "id": ""}"#,
        ] {
            assert_eq!(field(bad).as_deref(), Some("service"), "{bad}");
        }
        for bad in [
            r#"{"service": "dispatcher"}"#,
            r#"{"service": "dispatcher", "id": ""}"#,
            r#"{"service": "dispatcher", "id": "  "}"#,
            r#"{"service": "dispatcher", "id": null}"#,
            r#"{"service": "dispatcher", "id": 7}"#,
        ] {
            assert_eq!(field(bad).as_deref(), Some("id"), "{bad}");
        }
        assert_eq!(field("not json"), None);
        assert_eq!(field(r#"["dispatcher", "x"]"#), None);
        let err = parse_dismiss(br#"{"service": "whatsapp", "id": "x"}"#).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "service: unknown service \"whatsapp\"; use dispatcher, wa-gateway, sheets-logger"
        );
    }

    #[test]
    fn good_bodies_parse() {
        let r = parse_message(br#"{"to": "0812-3456-7890", "message": "Halo", "sendAt": "2026-11-24T07:00:00+07:00", "id": "a1"}"#)
            .unwrap();
        assert_eq!(r.to, "0812-3456-7890");
        assert_eq!(r.id, "a1");
        assert_eq!(r.send_at.unwrap().seconds, 1_795_478_400);
        let r = parse_message(br#"{"to": "x", "message": "y", "sendAt": 1000}"#).unwrap();
        assert_eq!(r.send_at.unwrap().seconds, 1);
    }
}
