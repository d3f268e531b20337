//! The live feed over Socket.IO: each browser gets the whole state when it
//! connects (event `snapshot`) and again after every change. Only clients that
//! passed the browser boundary and the login get here (the handshake passes
//! `boundary::guard` and `auth::require`), so this feed, unlike `/api/status`,
//! carries the QR code, drawn as SVG.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use qrcode::QrCode;
use qrcode::render::svg;
use serde::Serialize;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::sync::watch;

use crate::AppState;
use crate::auth::Auth;
use crate::snapshot::Snapshot;

pub const EVENT: &str = "snapshot";

/// How often connections are checked for expired sessions.
const SESSION_CHECK: Duration = Duration::from_secs(60);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Live<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    /// The default account's QR code to scan, as an SVG document; absent when none
    /// is waiting.
    qr_svg: Option<&'a str>,
    /// Each account's, in the order of `accounts`.
    account_qr_svgs: Vec<Option<&'a str>>,
}

/// Remembers the SVGs of the last QR codes, so a code is drawn once however many
/// updates and clients there are.
#[derive(Clone, Default)]
pub struct QrCache(Arc<Mutex<Vec<DrawnQr>>>);

/// A QR code and its SVG.
type DrawnQr = (String, Arc<str>);

/// QR codes remembered: a few per account (each account's gateway shows one at a
/// time and changes it every 20 s or so).
const QR_CACHE: usize = 64;

impl QrCache {
    pub fn svg(&self, code: &str) -> Option<Arc<str>> {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, svg)) = cache.iter().find(|(cached, _)| cached == code) {
            return Some(Arc::clone(svg));
        }
        let svg: Arc<str> = match render_qr(code) {
            Ok(svg) => svg.into(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot draw the QR code");
                return None;
            }
        };
        if cache.len() == QR_CACHE {
            cache.remove(0);
        }
        cache.push((code.to_owned(), Arc::clone(&svg)));
        Some(svg)
    }
}

pub fn render_qr(code: &str) -> Result<String, qrcode::types::QrError> {
    let qr = QrCode::new(code.as_bytes())?;
    Ok(qr
        .render::<svg::Color>()
        .min_dimensions(264, 264)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// The JSON sent to browsers.
pub fn payload(snapshot: &Snapshot, qr: &QrCache) -> Value {
    let qr_svg = snapshot.gateway.qr_code.as_deref().and_then(|c| qr.svg(c));
    let drawn: Vec<Option<Arc<str>>> = snapshot
        .accounts
        .iter()
        .map(|a| a.gateway.qr_code.as_deref().and_then(|c| qr.svg(c)))
        .collect();
    serde_json::to_value(Live {
        snapshot,
        qr_svg: qr_svg.as_deref(),
        account_qr_svgs: drawn.iter().map(|svg| svg.as_deref()).collect(),
    })
    .unwrap_or(Value::Null)
}

/// Registers the default namespace and starts pushing every snapshot change.
pub fn start(io: SocketIo, state: AppState) {
    let qr = QrCache::default();
    let snapshot = state.snapshot.clone();
    let (qr_connect, auth_check) = (qr.clone(), state.auth.clone());
    let tasks = state.tasks.clone();
    io.ns("/", move |socket: SocketRef| {
        let (state, qr) = (state.clone(), qr_connect.clone());
        async move {
            // The HTTP layers already checked; this guards against a route mix-up.
            let parts = socket.req_parts();
            let passed = state
                .boundary
                .judge(&parts.method, &parts.uri, &parts.headers)
                .is_ok();
            if !passed || !state.auth.allows(&parts.headers) {
                let _ = socket.disconnect();
                return;
            }
            let value = payload(&state.snapshot.borrow(), &qr);
            if let Err(e) = socket.emit(EVENT, &value) {
                tracing::debug!(error = %e, "client left before its snapshot");
            }
        }
    });
    tasks.spawn(drop_ended_sessions(io.clone(), auth_check));
    tasks.spawn(broadcast(io, snapshot, qr));
}

/// Disconnects clients whose session ended: at once after a logout, within a
/// minute after it expired.
async fn drop_ended_sessions(io: SocketIo, auth: Auth) {
    let mut revoked = auth.revocations();
    let mut check = tokio::time::interval(SESSION_CHECK);
    loop {
        tokio::select! {
            changed = revoked.changed() => if changed.is_err() { return },
            _ = check.tick() => {}
        }
        for socket in io.sockets() {
            if !auth.allows(&socket.req_parts().headers) {
                tracing::info!(sid = %socket.id, "session ended; closing its live feed");
                let _ = socket.disconnect();
            }
        }
    }
}

/// Pushes every snapshot change to the connected clients. With none connected nothing
/// is drawn: a client that connects gets the snapshot of that moment.
async fn broadcast(io: SocketIo, mut snapshot: watch::Receiver<Snapshot>, qr: QrCache) {
    while snapshot.changed().await.is_ok() {
        if io.sockets().is_empty() {
            snapshot.mark_unchanged();
            continue;
        }
        let value = payload(&snapshot.borrow_and_update(), &qr);
        if let Err(e) = io.emit(EVENT, &value).await {
            tracing::debug!(error = %e, "broadcast did not reach every client");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abtrack_proto::gateway::v1 as gpb;

    #[test]
    fn the_qr_code_is_drawn_and_cached() {
        let mut s = Snapshot::default();
        let qr = QrCache::default();
        assert_eq!(payload(&s, &qr)["qrSvg"], Value::Null);
        s.apply_gateway(gpb::GatewayEvent {
            event: Some(gpb::gateway_event::Event::Qr(gpb::QrCode {
                code: "2@abc,def,ghi".into(),
                expires_at: None,
            })),
        });
        let first = payload(&s, &qr);
        let svg = first["qrSvg"].as_str().unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<path"), "{svg}");
        assert_eq!(first["gateway"]["qrAvailable"], true);
        let again = qr.svg("2@abc,def,ghi").unwrap();
        assert!(Arc::ptr_eq(&again, &qr.svg("2@abc,def,ghi").unwrap()));
    }
}
