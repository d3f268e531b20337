//! Who may see the dashboard: a password that opens a session cookie, a bearer key
//! for API clients, and a limit on login attempts. Without a password (loopback
//! only, see `config.rs`) every request is let through.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::Deserialize;
use tokio::sync::watch;

use abtrack_proto::token::same_secret;

use crate::AppState;
use crate::error::ApiError;
use crate::i18n::Lang;

pub const COOKIE: &str = "abtrack_session";
/// How long a session lasts without a new login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed per client address within [`LOGIN_WINDOW`].
pub const LOGIN_ATTEMPTS: u32 = 5;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Paths anyone may open. The style sheet holds no data, and the login page needs it.
const PUBLIC: &[&str] = &["/healthz", "/login", "/assets/dashboard.css"];

#[derive(Clone)]
pub struct Auth {
    password: Option<Arc<str>>,
    api_key: Option<Arc<str>>,
    sessions: Arc<Mutex<HashMap<String, Instant>>>,
    failures: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
    /// Bumped at each logout, so the live feed drops that session's connections.
    revoked: Arc<watch::Sender<u64>>,
}

impl Auth {
    pub fn new(password: Option<String>, api_key: Option<String>) -> Self {
        Self {
            password: password.map(Arc::from),
            api_key: api_key.map(Arc::from),
            sessions: Arc::default(),
            failures: Arc::default(),
            revoked: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Changes whenever a session ends by logout.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revoked.subscribe()
    }

    pub fn enabled(&self) -> bool {
        self.password.is_some()
    }

    /// Whether a request (or a Socket.IO handshake) carries a live session cookie or
    /// the API key.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.enabled() {
            return true;
        }
        if let (Some(key), Some(bearer)) = (&self.api_key, bearer(headers))
            && same_secret(key.as_bytes(), bearer.as_bytes())
        {
            return true;
        }
        match session_cookie(headers) {
            Some(token) => {
                let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
                match sessions.get(token) {
                    Some(expires) if *expires > Instant::now() => true,
                    Some(_) => {
                        sessions.remove(token);
                        false
                    }
                    None => false,
                }
            }
            None => false,
        }
    }

    fn new_session(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, expires| *expires > now);
        sessions.insert(token.clone(), now + SESSION_TTL);
        token
    }

    fn end_session(&self, headers: &HeaderMap) {
        if let Some(token) = session_cookie(headers)
            && self
                .sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(token)
                .is_some()
        {
            self.revoked.send_modify(|n| *n += 1);
        }
    }

    /// Seconds to wait when `ip` has used up its attempts.
    fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let (since, count) = failures.get(&ip)?;
        let left = LOGIN_WINDOW.checked_sub(since.elapsed())?;
        (*count >= LOGIN_ATTEMPTS).then_some(left.as_secs().max(1))
    }

    fn record_failure(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        failures.retain(|_, (since, _)| now.duration_since(*since) < LOGIN_WINDOW);
        failures.entry(ip).or_insert((now, 0)).1 += 1;
    }

    fn check_password(&self, given: &str) -> bool {
        self.password
            .as_ref()
            .is_some_and(|p| same_secret(p.as_bytes(), given.as_bytes()))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Lets public paths and authenticated requests through. Pages answer a browser
/// with a redirect to the login page; everything else (the API, `/metrics`, the
/// Socket.IO handshake) answers 401.
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if PUBLIC.contains(&path) || state.auth.allows(request.headers()) {
        return next.run(request).await;
    }
    if request.method() == Method::GET && path == "/" {
        // Keeps `?lang=` for the login page.
        let target = match request.uri().query() {
            Some(query) => format!("/login?{query}"),
            None => "/login".to_owned(),
        };
        return Redirect::to(&target).into_response();
    }
    let mut response = ApiError {
        status: StatusCode::UNAUTHORIZED,
        field: None,
        message: "authentication required: log in at /login or send Authorization: Bearer <STATUS_WEB_API_KEY>".into(),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[derive(Debug, Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
}

pub async fn login_page(
    State(state): State<AppState>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    if !state.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let lang = Lang::pick(query.lang.as_deref(), &headers);
    Html(crate::dashboard::login_html(lang, None)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    lang: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::pick(form.lang.as_deref(), &headers);
    if !state.auth.enabled() {
        return Redirect::to("/").into_response();
    }
    let ip = peer.ip();
    if let Some(wait) = state.auth.blocked_for(ip) {
        tracing::warn!(%ip, "login refused: too many attempts");
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Html(crate::dashboard::login_html(
                lang,
                Some(lang.t("login_too_many")),
            )),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    if !state.auth.check_password(&form.password) {
        state.auth.record_failure(ip);
        tracing::warn!(%ip, "login failed: wrong password");
        return (
            StatusCode::UNAUTHORIZED,
            Html(crate::dashboard::login_html(
                lang,
                Some(lang.t("login_wrong")),
            )),
        )
            .into_response();
    }
    let token = state.auth.new_session();
    tracing::info!(%ip, "logged in");
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response = Redirect::to(&format!("/?lang={}", lang.code())).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.auth.end_session(&headers);
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("abtrack_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn sessions_and_keys() {
        let auth = Auth::new(Some("password1".into()), Some("k".repeat(16)));
        assert!(!auth.allows(&HeaderMap::new()));
        let token = auth.new_session();
        assert!(auth.allows(&headers(&[(
            header::COOKIE,
            &format!("a=b; {COOKIE}={token}")
        )])));
        assert!(!auth.allows(&headers(&[(header::COOKIE, &format!("{COOKIE}=nope"))])));
        assert!(auth.allows(&headers(&[(
            header::AUTHORIZATION,
            &format!("Bearer {}", "k".repeat(16))
        )])));
        assert!(!auth.allows(&headers(&[(header::AUTHORIZATION, "Bearer kkk")])));
        assert!(Auth::new(None, None).allows(&HeaderMap::new()));
    }

    #[test]
    fn logins_are_limited_per_address() {
        let auth = Auth::new(Some("password1".into()), None);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..LOGIN_ATTEMPTS {
            assert_eq!(auth.blocked_for(ip), None);
            auth.record_failure(ip);
        }
        assert!(auth.blocked_for(ip).is_some());
        assert_eq!(auth.blocked_for("10.0.0.8".parse().unwrap()), None);
    }
}
