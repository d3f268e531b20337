//! The standalone program's arguments and its HTTP control API: link the gateway,
//! set how the server treats each recipient, read what each one received, release
//! held receipts and fire server events. It takes orders on the operator's own machine, so it answers only requests that name
//! it by its loopback address, refuses anything another web page sends (an `Origin`
//! other than its own, `Sec-Fetch-Site: cross-site` or `same-site`), and takes
//! `POST`/`PUT` only with `Content-Type: application/json`, which a page cannot send
//! to it without a CORS preflight that is never granted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use abtrack_proto::gateway::v1 as pb;

use crate::{AckBehaviour, MockServer, ReceiptKind, Received, ReceivedMedia, Recipient};

/// How long `POST /scan` waits for the gateway to show a new QR code.
const QR_WAIT: Duration = Duration::from_secs(20);

/// How to call the program.
pub const USAGE: &str = "usage: wa-mock [--listen ADDR] [--control ADDR] [--phone DIGITS] [--gateway URL] [--no-receipts]
  --listen ADDR    the WhatsApp WebSocket address (default 127.0.0.1:7300)
  --control ADDR   the HTTP control API (default 127.0.0.1:7301; loopback only)
  --phone DIGITS   the mock phone's number (default 6281100000001)
  --gateway URL    the gateway's gRPC address, where POST /scan reads the QR code
                   (default http://127.0.0.1:50052)
  --no-receipts    recipients send no delivery receipts unless told (as in the tests)";

/// The program's arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// The WhatsApp WebSocket address.
    pub listen: SocketAddr,
    /// The control API's address (loopback only).
    pub control: SocketAddr,
    pub phone: String,
    /// The gateway's gRPC address, where `POST /scan` reads the QR code.
    pub gateway: String,
    /// Whether recipients' phones confirm deliveries by themselves.
    pub receipts: bool,
}

impl Args {
    /// Parses the arguments after the program's name; `None` for `--help`.
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
        let mut parsed = Args {
            listen: SocketAddr::from(([127, 0, 0, 1], 7300)),
            control: SocketAddr::from(([127, 0, 0, 1], 7301)),
            phone: "6281100000001".into(),
            gateway: "http://127.0.0.1:50052".into(),
            receipts: true,
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => parsed.listen = address(&flag, &value()?)?,
                "--control" => parsed.control = address(&flag, &value()?)?,
                "--phone" => {
                    parsed.phone = number(&value()?).map_err(|e| format!("--phone {}", e.1))?;
                }
                "--gateway" => {
                    let url = value()?;
                    if !url.starts_with("http://") && !url.starts_with("https://") {
                        return Err(format!(
                            "--gateway {url:?}: expected a URL such as http://127.0.0.1:50052"
                        ));
                    }
                    parsed.gateway = url;
                }
                "--no-receipts" => parsed.receipts = false,
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if !parsed.control.ip().is_loopback() {
            return Err(format!(
                "--control {}: the control API takes orders from anyone who reaches it; give a loopback address",
                parsed.control
            ));
        }
        Ok(Some(parsed))
    }
}

fn address(flag: &str, value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?}: expected an address such as 127.0.0.1:7300"))
}

#[derive(Clone)]
struct Ctx {
    mock: Arc<MockServer>,
    /// The gateway's gRPC address, where `POST /scan` reads the QR code it shows.
    gateway: String,
}

/// The control API for `mock`, served on `control`.
pub fn router(mock: Arc<MockServer>, control: SocketAddr, gateway: String) -> Router {
    Router::new()
        .route("/", get(state))
        .route("/state", get(state))
        .route("/scan", post(scan))
        .route("/phones", post(add_phone))
        .route("/pair-code", post(pair_code))
        .route("/recipients", get(recipients))
        .route("/recipients/{number}", put(set_recipient).get(recipient))
        .route("/recipients/{number}/release", post(release))
        .route("/recipients/{number}/read", post(read))
        .route("/received", get(received))
        .route("/media", get(media))
        .route("/media/fail-uploads", post(fail_uploads))
        .route("/time-lock", post(time_lock))
        .route("/new-chat-quota", post(new_chat_quota))
        .route("/events/{event}", post(event))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; GET / lists them")
        })
        .layer(middleware::from_fn_with_state(control, guard))
        .with_state(Ctx { mock, gateway })
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self(code, message.into())
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

async fn guard(State(control): State<SocketAddr>, request: Request, next: Next) -> Response {
    match judge(control, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(reason = %refusal.1, method = %request.method(), path = ?request.uri().path(), "control request refused");
            refusal.into_response()
        }
    }
}

/// Whether a request may reach the control API (see the module's comment).
fn judge(control: SocketAddr, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = header("host").unwrap_or_default();
    let port = control.port();
    let ours = [
        control.to_string(),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if !ours.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not this control API; use http://{control}/"),
        ));
    }
    if let Some(origin) = header("origin")
        && !origin.eq_ignore_ascii_case(&format!("http://{host}"))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "requests from other web pages are refused",
        ));
    }
    if matches!(header("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "requests from other web pages are refused",
        ));
    }
    let json = header("content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if method != Method::GET && !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json (an empty body is {})",
        ));
    }
    Ok(())
}

/// The body as `T`; an empty body reads as `{}`.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("body: {e}")))
}

fn number(raw: &str) -> Result<String, ApiError> {
    let digits = raw.trim_start_matches('+');
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits.to_owned())
    } else {
        Err(ApiError::bad(format!(
            "{raw:?} is not a number: give 8 to 15 digits with the country code, e.g. 6281234567890"
        )))
    }
}

async fn state(State(ctx): State<Ctx>) -> Answer {
    let mock = &ctx.mock;
    Ok(Json(json!({
        "whatsappUrl": mock.url(),
        "phone": mock.phone_number(),
        "linkedDevices": mock.linked_devices(),
        "online": mock.online(),
        "waitingForScan": mock.waiting_for_scan(),
        "logins": mock.logins(),
        "timeLockUntil": mock.time_lock_until(),
        "newChatsOpened": mock.new_chats_opened(),
        "mediaHost": format!("https://{}", mock.media_host()),
        "routes": [
            "GET /state",
            "POST /scan {} | {\"gateway\": \"http://host:port\"} | {\"code\": \"<QR code text>\"}, and \"phone\": \"<number>\" for another account's phone",
            "POST /phones {\"number\": \"62...\"}",
            "POST /pair-code {\"code\": \"ABCD-1234\"}",
            "GET /recipients",
            "GET|PUT /recipients/{number} {\"ack\", \"cold\", \"offline\", \"lidOnly\"}",
            "POST /recipients/{number}/release",
            "POST /recipients/{number}/read",
            "GET /received",
            "GET /media (the media host, its uploads, the media messages that did not open)",
            "POST /media/fail-uploads {\"status\": 503, \"count\": N}",
            "POST /time-lock {\"seconds\": N}",
            "POST /new-chat-quota {\"total\": N, \"seconds\": S}",
            "POST /events/{logout|replace|ban|unban|drop|stall}",
        ],
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Scan {
    /// The QR code's text; absent: read the code the gateway shows now.
    code: Option<String>,
    /// The gateway's gRPC address, if not the one given with `--gateway`.
    gateway: Option<String>,
    /// The number of the phone that scans (one added with `POST /phones`); absent:
    /// the first phone.
    phone: Option<String>,
}

/// The phone scans a QR code: the one given, or the one the gateway shows (read from
/// its `Watch` stream after asking the waiting client to show a fresh one).
async fn scan(State(ctx): State<Ctx>, raw: Bytes) -> Answer {
    let asked: Scan = body(&raw)?;
    let code = match asked.code {
        Some(code) => code,
        None => gateway_qr(&ctx, asked.gateway.as_deref().unwrap_or(&ctx.gateway)).await?,
    };
    let scanned = match &asked.phone {
        Some(phone) => ctx.mock.scan_qr_as(phone, &code),
        None => ctx.mock.scan_qr(&code),
    };
    scanned.map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(json!({ "scanned": true })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewPhone {
    number: Option<String>,
}

/// Adds another account's phone: its number (digits).
async fn add_phone(State(ctx): State<Ctx>, raw: Bytes) -> Answer {
    let NewPhone { number } = body(&raw)?;
    let number = number
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| ApiError::bad("number: the phone's number in digits (62...)"))?;
    ctx.mock.add_phone(&number);
    Ok(Json(json!({ "added": number })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PairCode {
    code: Option<String>,
}

/// The phone's user types the pair code the gateway shows (after "Link with phone
/// number" on the dashboard, for this phone's number).
async fn pair_code(State(ctx): State<Ctx>, raw: Bytes) -> Answer {
    let PairCode { code } = body(&raw)?;
    let code =
        code.ok_or_else(|| ApiError::bad("code: missing (the 8 characters the gateway shows)"))?;
    ctx.mock
        .enter_pair_code(&code)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(json!({ "entered": true })))
}

async fn gateway_qr(ctx: &Ctx, gateway: &str) -> Result<String, ApiError> {
    if ctx.mock.waiting_for_scan() == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no client is waiting to be linked (is the gateway started with WA_SERVER_URL pointing here, and not linked yet?)",
        ));
    }
    let unreachable = |e: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("cannot read the QR code from the gateway at {gateway}: {e}"),
        )
    };
    let mut client = pb::gateway_client::GatewayClient::connect(gateway.to_owned())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut request = tonic::Request::new(pb::WatchRequest::default());
    if let Ok(token) = std::env::var(abtrack_proto::token::ENV_VAR)
        && let Ok(value) = token.parse()
    {
        request
            .metadata_mut()
            .insert(abtrack_proto::token::METADATA_KEY, value);
    }
    let mut events = client
        .watch(request)
        .await
        .map_err(|e| unreachable(e.message().to_owned()))?
        .into_inner();
    ctx.mock.refresh_pairing();
    let wait = async {
        while let Some(event) = events
            .message()
            .await
            .map_err(|e| unreachable(e.message().to_owned()))?
        {
            if let Some(pb::gateway_event::Event::Qr(qr)) = event.event {
                return Ok(qr.code);
            }
        }
        Err(unreachable("the stream ended".into()))
    };
    tokio::time::timeout(QR_WAIT, wait).await.map_err(|_| {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the gateway showed no QR code within {}s",
                QR_WAIT.as_secs()
            ),
        )
    })?
}

/// A recipient with the messages it got, out of `received` (every message).
fn recipient_view(r: &Recipient, received: &[Received]) -> Value {
    let ack = match &r.behaviour {
        AckBehaviour::Normal => json!("normal"),
        AckBehaviour::Never => json!("never"),
        AckBehaviour::Slow(d) => json!({ "slow": { "ms": d.as_millis() as u64 } }),
        AckBehaviour::Error(code) => json!({ "error": { "code": code } }),
    };
    let received: Vec<Value> = received
        .iter()
        .filter(|m| m.to == r.number)
        .map(|m| json!({ "id": m.message_id, "text": m.text, "media": media_view(m.media.as_ref()), "atMs": m.at_ms }))
        .collect();
    json!({
        "number": r.number,
        "lid": r.lid.as_ref().map(|l| format!("{l}@lid")),
        "ack": ack,
        "cold": r.cold,
        "offline": r.offline,
        "heldReceipts": r.held_receipts,
        "received": received,
    })
}

async fn recipients(State(ctx): State<Ctx>) -> Answer {
    let received = ctx.mock.received();
    let all: Vec<Value> = ctx
        .mock
        .recipients()
        .iter()
        .map(|r| recipient_view(r, &received))
        .collect();
    Ok(Json(Value::Array(all)))
}

async fn recipient(State(ctx): State<Ctx>, Path(raw): Path<String>) -> Answer {
    let number = number(&raw)?;
    ctx.mock
        .recipients()
        .iter()
        .find(|r| r.number == number)
        .map(|r| Json(recipient_view(r, &ctx.mock.received())))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{number} is not on WhatsApp here; PUT /recipients/{number} adds it"),
            )
        })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum Ack {
    Normal,
    Never,
    Slow { ms: u64 },
    Error { code: String },
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Settings {
    ack: Option<Ack>,
    cold: Option<bool>,
    offline: Option<bool>,
    lid_only: Option<bool>,
}

/// Makes the number a WhatsApp user (if it is not yet) and applies the settings given.
async fn set_recipient(State(ctx): State<Ctx>, Path(raw): Path<String>, raw_body: Bytes) -> Answer {
    let number = number(&raw)?;
    let settings: Settings = body(&raw_body)?;
    let behaviour = match settings.ack {
        None => None,
        Some(Ack::Normal) => Some(AckBehaviour::Normal),
        Some(Ack::Never) => Some(AckBehaviour::Never),
        Some(Ack::Slow { ms }) if ms <= 600_000 => {
            Some(AckBehaviour::Slow(Duration::from_millis(ms)))
        }
        Some(Ack::Slow { ms }) => {
            return Err(ApiError::bad(format!(
                "ack.slow.ms: {ms} is more than 600000 (ten minutes)"
            )));
        }
        Some(Ack::Error { code })
            if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(AckBehaviour::Error(code))
        }
        Some(Ack::Error { code }) => {
            return Err(ApiError::bad(format!(
                "ack.error.code: {code:?} is not a three-digit code such as 479 or 463"
            )));
        }
    };
    let mock = &ctx.mock;
    mock.add_contact(&number);
    if let Some(behaviour) = behaviour {
        mock.set_behaviour(&number, behaviour);
    }
    match settings.cold {
        Some(true) => mock.set_cold(&number),
        Some(false) => mock.set_warm(&number),
        None => {}
    }
    if let Some(offline) = settings.offline {
        mock.set_offline(&number, offline);
    }
    match settings.lid_only {
        Some(true) => {
            mock.add_lid_contact(&number);
        }
        Some(false) => mock.address_by_number(&number),
        None => {}
    }
    recipient(State(ctx), Path(number)).await
}

async fn release(State(ctx): State<Ctx>, Path(raw): Path<String>) -> Answer {
    let number = number(&raw)?;
    let released = ctx.mock.release_receipts(&number).map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("no linked device to send to: {e}"),
        )
    })?;
    Ok(Json(json!({ "released": released })))
}

/// The recipient reads every message it received: a read receipt for each.
async fn read(State(ctx): State<Ctx>, Path(raw): Path<String>) -> Answer {
    let number = number(&raw)?;
    let ids: Vec<String> = ctx
        .mock
        .received()
        .into_iter()
        .filter(|m| m.to == number)
        .map(|m| m.message_id)
        .collect();
    for id in &ids {
        ctx.mock
            .send_receipt(&number, id, ReceiptKind::Read)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    format!("no linked device to send to: {e}"),
                )
            })?;
    }
    Ok(Json(json!({ "read": ids.len() })))
}

async fn received(State(ctx): State<Ctx>) -> Answer {
    let all: Vec<Value> = ctx
        .mock
        .received()
        .into_iter()
        .map(|m| {
            json!({ "from": m.from, "to": m.to, "id": m.message_id, "text": m.text, "media": media_view(m.media.as_ref()), "atMs": m.at_ms })
        })
        .collect();
    Ok(Json(Value::Array(all)))
}

/// A received file as the API shows it: what it is, never its bytes.
fn media_view(media: Option<&ReceivedMedia>) -> Value {
    media.map_or(Value::Null, |m| {
        json!({
            "kind": m.kind.as_str(),
            "mimeType": m.mime_type,
            "fileName": m.file_name,
            "size": m.bytes.len(),
            "sha256": m.sha256_hex(),
        })
    })
}

/// The media host: its address, every upload it answered, and the media messages
/// their recipients could not open.
async fn media(State(ctx): State<Ctx>) -> Answer {
    let uploads: Vec<Value> = ctx
        .mock
        .uploads()
        .into_iter()
        .map(|u| {
            json!({ "media": u.media, "token": u.token, "length": u.length, "status": u.status, "directPath": u.direct_path, "atMs": u.at_ms })
        })
        .collect();
    let failures: Vec<Value> = ctx
        .mock
        .media_failures()
        .into_iter()
        .map(|f| {
            json!({ "from": f.from, "to": f.to, "id": f.message_id, "kind": f.kind.as_str(), "reason": f.reason, "atMs": f.at_ms })
        })
        .collect();
    Ok(Json(json!({
        "host": format!("https://{}", ctx.mock.media_host()),
        "uploads": uploads,
        "failures": failures,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FailUploads {
    status: Option<u16>,
    count: Option<usize>,
}

/// The next `count` uploads (default 1) get `status` (default 503); count 0 ends it.
async fn fail_uploads(State(ctx): State<Ctx>, raw: Bytes) -> Answer {
    let FailUploads { status, count } = body(&raw)?;
    let status = status.unwrap_or(503);
    if !(400..=599).contains(&status) {
        return Err(ApiError::bad(format!(
            "status: {status} is not an HTTP error status (400 to 599)"
        )));
    }
    let count = count.unwrap_or(1);
    ctx.mock.fail_uploads(status, count);
    Ok(Json(json!({ "status": status, "count": count })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Seconds {
    seconds: Option<u64>,
}

/// Puts the account under a reach-out time lock for `seconds` (`0` lifts it).
async fn time_lock(State(ctx): State<Ctx>, raw: Bytes) -> Answer {
    let Seconds { seconds } = body(&raw)?;
    let seconds = seconds.ok_or_else(|| ApiError::bad("seconds: missing (0 lifts the lock)"))?;
    if seconds == 0 {
        ctx.mock.lift_time_lock();
    } else {
        ctx.mock.reach_out_time_lock(Duration::from_secs(seconds));
    }
    Ok(Json(json!({ "timeLockUntil": ctx.mock.time_lock_until() })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Quota {
    total: Option<usize>,
    seconds: Option<u64>,
}

/// Limits the new chats (messages to cold recipients) the account may open to `total`
/// for `seconds` (default an hour).
async fn new_chat_quota(State(ctx): State<Ctx>, raw: Bytes) -> Answer {
    let Quota { total, seconds } = body(&raw)?;
    let total = total.ok_or_else(|| ApiError::bad("total: missing"))?;
    let seconds = seconds.unwrap_or(3600);
    if seconds == 0 {
        return Err(ApiError::bad("seconds: must be above 0"));
    }
    ctx.mock.new_chat_quota(total, Duration::from_secs(seconds));
    Ok(Json(
        json!({ "total": total, "opened": ctx.mock.new_chats_opened() }),
    ))
}

/// Fires a server event at the linked sessions.
async fn event(State(ctx): State<Ctx>, Path(event): Path<String>, raw: Bytes) -> Answer {
    let Seconds { seconds } = body(&raw)?;
    let mock = &ctx.mock;
    match event.as_str() {
        "logout" => mock.logout_from_phone(),
        "replace" => mock.replace_stream(),
        "ban" => mock.temporary_ban(Duration::from_secs(seconds.unwrap_or(60))),
        "unban" => mock.lift_ban(),
        "drop" => mock.drop_connections(),
        "stall" => mock.stall(),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no event {other:?}; events: logout, replace, ban, unban, drop, stall"),
            ));
        }
    }
    Ok(Json(json!({ "fired": event })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_requests_naming_the_api_from_no_other_page_pass() {
        let control: SocketAddr = "127.0.0.1:7301".parse().unwrap();
        let json = ("content-type", "application/json");
        let pass = |m: Method, h: &[(&'static str, &str)]| judge(control, &m, &headers(h));
        assert!(pass(Method::GET, &[("host", "127.0.0.1:7301")]).is_ok());
        assert!(pass(Method::POST, &[("host", "localhost:7301"), json]).is_ok());
        assert!(
            pass(
                Method::POST,
                &[
                    ("host", "127.0.0.1:7301"),
                    ("origin", "http://127.0.0.1:7301"),
                    json
                ]
            )
            .is_ok()
        );
        // DNS rebinding, another page, a form post.
        assert_eq!(
            pass(Method::GET, &[("host", "evil.example:7301")])
                .unwrap_err()
                .0,
            403
        );
        assert_eq!(pass(Method::GET, &[]).unwrap_err().0, 403);
        assert_eq!(
            pass(
                Method::POST,
                &[
                    ("host", "127.0.0.1:7301"),
                    ("origin", "http://evil.example"),
                    json
                ]
            )
            .unwrap_err()
            .0,
            403
        );
        assert_eq!(
            pass(
                Method::GET,
                &[("host", "127.0.0.1:7301"), ("sec-fetch-site", "same-site")]
            )
            .unwrap_err()
            .0,
            403
        );
        assert_eq!(
            pass(
                Method::POST,
                &[("host", "127.0.0.1:7301"), ("content-type", "text/plain")]
            )
            .unwrap_err()
            .0,
            415
        );
    }

    #[test]
    fn numbers_and_bodies_are_checked() {
        assert_eq!(number("+6281234567890").unwrap(), "6281234567890");
        assert!(number("0812").is_err());
        assert!(number("62812x4567890").is_err());
        let empty: Settings = body(b"").unwrap();
        assert!(empty.ack.is_none());
        let s: Settings = body(br#"{"ack": {"slow": {"ms": 3000}}, "lidOnly": true}"#).unwrap();
        assert!(matches!(s.ack, Some(Ack::Slow { ms: 3000 })));
        assert!(
            body::<Settings>(br#"{"acks": "normal"}"#)
                .unwrap_err()
                .1
                .starts_with("body: unknown field")
        );
    }

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_flags_and_refusals() {
        let args = parse(&[]).unwrap().unwrap();
        assert_eq!(args.listen.to_string(), "127.0.0.1:7300");
        assert!(args.receipts);
        let args = parse(&[
            "--listen",
            "0.0.0.0:9000",
            "--phone",
            "628111",
            "--no-receipts",
        ]);
        assert!(args.unwrap_err().contains("8 to 15 digits"));
        let args = parse(&["--phone", "6281100000009", "--no-receipts"])
            .unwrap()
            .unwrap();
        assert_eq!(
            (args.phone.as_str(), args.receipts),
            ("6281100000009", false)
        );
        assert!(
            parse(&["--control", "0.0.0.0:7301"])
                .unwrap_err()
                .contains("loopback")
        );
        assert!(parse(&["--listen"]).unwrap_err().contains("needs a value"));
        assert!(
            parse(&["--listen", "here"])
                .unwrap_err()
                .contains("expected an address")
        );
        assert!(parse(&["--what"]).unwrap_err().contains("unknown argument"));
        assert_eq!(parse(&["--help"]).unwrap(), None);
    }
}
