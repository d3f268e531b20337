//! The media host's HTTPS side: TLS with a certificate made at start, and the
//! routes WhatsApp's CDN answers: uploads under `/mms/{type}/{token}` (and their
//! resume checks) and downloads by direct path. What an upload gets is decided in
//! `media.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::{MAX_UPLOAD_BYTES, UploadQuery, UploadedBody};
use crate::server::Shared;

/// The `/mms/{type}` path segments the host takes, as `MediaType::upload_path` names
/// them.
const MEDIA_TYPES: [&str; 9] = [
    "image",
    "video",
    "audio",
    "document",
    "md-msg-hist",
    "md-app-state",
    "sticker-pack",
    "thumbnail-sticker-pack",
    "thumbnail-link",
];

/// Reads a body into one buffer sized by its `Content-Length`, hashing as it
/// goes; refuses one past [`MAX_UPLOAD_BYTES`].
async fn read_body(headers: &HeaderMap, body: Body) -> Result<UploadedBody, (StatusCode, String)> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {MAX_UPLOAD_BYTES} bytes"),
        )
    };
    if declared > MAX_UPLOAD_BYTES {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(declared);
    let mut hasher = Sha256::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        if data.len() + chunk.len() > MAX_UPLOAD_BYTES {
            return Err(too_large());
        }
        hasher.update(&chunk);
        data.extend_from_slice(&chunk);
    }
    Ok(UploadedBody {
        bytes: Bytes::from(data),
        sha256: hasher.finalize().into(),
    })
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Path((media, token)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !MEDIA_TYPES.contains(&media.as_str()) {
        return (StatusCode::NOT_FOUND, "no such media type").into_response();
    }
    // The body is read whatever the answer, so the client reads the status rather
    // than a connection closed under its upload.
    let received = match read_body(&headers, body).await {
        Ok(received) => received,
        Err(refusal) => return refusal.into_response(),
    };
    let answer = if query.resume.is_some() {
        shared.media.resume(&media, &token, &query)
    } else {
        shared.media.accept(&media, &token, &query, received)
    };
    shared.touch();
    answer
}

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    token: Option<String>,
}

/// Serves a kept blob to whoever names its direct path and hash, as the CDN does.
async fn download(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> Response {
    let direct_path = format!("/v/{rest}");
    let Some(blob) = shared.media.lock().blobs.get(&direct_path).cloned() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    if query.token.as_deref() != Some(URL_SAFE_NO_PAD.encode(blob.enc_sha256).as_str()) {
        return (StatusCode::FORBIDDEN, "bad token").into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        blob.bytes,
    )
        .into_response()
}

/// The host's TLS setup: a certificate made now for `127.0.0.1` and `localhost`,
/// with the `ring` provider the workspace's rustls is built with.
fn tls_acceptor() -> crate::Result<TlsAcceptor> {
    let tls = |e: &dyn std::fmt::Display| crate::Error::Tls(e.to_string());
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(|e| tls(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Starts the host on `listener`; answers the task that serves it, whose
/// connections end when it is aborted.
pub(crate) fn serve(shared: Arc<Shared>, listener: TcpListener) -> crate::Result<JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let named = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    shared.media.lock().host = named.to_string();
    let acceptor = tls_acceptor()?;
    let app = Router::new()
        .route(
            "/mms/{media}/{token}",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route("/v/{*rest}", get(download))
        .with_state(shared);
    Ok(tokio::spawn(async move {
        // Owns every connection: dropping the set (when this task is aborted)
        // ends them.
        let mut connections = JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: give the other tasks a moment.
                        tracing::warn!(error = %e, "the media host cannot accept");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                Some(_) = connections.join_next() => continue,
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            connections.spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        tracing::debug!(error = %e, "a TLS handshake with the media host failed");
                        return;
                    }
                };
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
                if let Err(e) = served {
                    tracing::debug!(error = %e, "a media host connection ended badly");
                }
            });
        }
    }))
}
