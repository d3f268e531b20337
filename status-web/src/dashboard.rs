//! The dashboard's page and its files, compiled into the binary so it works
//! offline: the HTML, its script and style, the Socket.IO browser client
//! (socket.io-client 4.8.4, `dist/socket.io.min.js` from npm) and the charting
//! library (Chart.js 4.6.2, MIT, `dist/chart.umd.min.js` from npm without its
//! source-map line).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};

use crate::AppState;
use crate::auth::LangQuery;
use crate::i18n::Lang;

const PAGE: &str = include_str!("../assets/dashboard.html");
const LOGIN: &str = include_str!("../assets/login.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");
const SOCKET_IO: &str = include_str!("../assets/socket.io.min.js");
const CHART_JS: &str = include_str!("../assets/chart.umd.min.js");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let lang = Lang::pick(query.lang.as_deref(), &headers);
    let html = PAGE.replace("{{LANG}}", lang.code()).replace(
        "{{AUTH}}",
        if state.auth.enabled() {
            "true"
        } else {
            "false"
        },
    );
    ([NO_STORE], Html(html))
}

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, JS), NO_STORE], SCRIPT)
}

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CSS), NO_STORE], STYLE)
}

pub async fn socket_io() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, JS)], SOCKET_IO)
}

pub async fn chart_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, JS)], CHART_JS)
}

/// The login page, with an error line after a failed attempt.
pub fn login_html(lang: Lang, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"result error\" id=\"login-error\">{}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    LOGIN
        .replace("{{LANG}}", lang.code())
        .replace("{{TITLE}}", lang.t("title"))
        .replace("{{HEADING}}", lang.t("login_heading"))
        .replace("{{PASSWORD}}", lang.t("password"))
        .replace("{{BUTTON}}", lang.t("login_button"))
        .replace("{{ERROR}}", &error)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
