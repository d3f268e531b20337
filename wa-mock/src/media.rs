//! The media host, WhatsApp's CDN as a client meets it: the `w:m` query hands out an
//! upload token and this host's address, and an HTTPS server (a self-made
//! certificate) takes encrypted uploads under `/mms/{type}/{token}`, checks them as
//! WhatsApp does (the session's token, the blob's hash), keeps each blob under a
//! direct path of its own and serves it back. It never decrypts: a recipient opens
//! a blob only when a message names it (see `attachment.rs`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use wacore::iq::mediaconn::{HostType, MediaConnHostExtended, MediaConnResponseExtended};
use wacore::protocol::ProtocolNode as _;
use wacore_binary::Node;

use crate::server::{Shared, now_ms, result_for};

mod https;

pub(crate) use https::serve;

/// The largest upload the host takes (WhatsApp's documents go to 100 MB and more).
pub const MAX_UPLOAD_BYTES: usize = 128 * 1024 * 1024;

/// How long a `media_conn` answer holds, in seconds (WhatsApp answers minutes).
const MEDIA_CONN_TTL: u64 = 300;

/// One upload the host answered (resume checks are not uploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The media type's path segment: `image`, `document`, ...
    pub media: String,
    /// The URL's token: base64url (no padding) of the encrypted file's SHA-256.
    pub token: String,
    /// The body's length in bytes.
    pub length: u64,
    /// The HTTP status the host answered; 200 for a blob it kept.
    pub status: u16,
    /// Where the blob is kept, for an upload the host took.
    pub direct_path: Option<String>,
    /// When the host answered (ms since the epoch).
    pub at_ms: i64,
}

/// An encrypted file the host keeps.
#[derive(Clone)]
pub(crate) struct Blob {
    pub media: String,
    pub enc_sha256: [u8; 32],
    pub url: String,
    pub direct_path: String,
    /// Shared, never copied: each reader holds the one allocation the upload filled.
    pub bytes: Bytes,
}

/// What the host holds; behind its own lock, apart from the chat server's state.
struct Inner {
    /// `127.0.0.1:<port>`: what the `media_conn` answer names as the host.
    host: String,
    /// The upload token the `media_conn` answer hands out.
    auth: String,
    /// Blobs by direct path.
    blobs: HashMap<String, Blob>,
    uploads: Vec<Upload>,
    /// Set by `fail_uploads`: the status the next uploads get, and how many.
    failing: Option<(StatusCode, usize)>,
    failures: Vec<crate::MediaFailure>,
}

/// The media host's state, shared by the chat server (the `media_conn` answer and
/// the recipients opening media) and the HTTPS server.
pub(crate) struct Store(Mutex<Inner>);

fn fresh_auth() -> String {
    format!(
        "mock-{}",
        URL_SAFE_NO_PAD.encode(rand10::random::<[u8; 24]>())
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(Inner {
            host: String::new(),
            auth: fresh_auth(),
            blobs: HashMap::new(),
            uploads: Vec::new(),
            failing: None,
            failures: Vec::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn host(&self) -> String {
        self.lock().host.clone()
    }

    pub(crate) fn auth(&self) -> String {
        self.lock().auth.clone()
    }

    pub(crate) fn rotate_auth(&self) {
        self.lock().auth = fresh_auth();
    }

    pub(crate) fn fail_uploads(&self, status: StatusCode, count: usize) {
        self.lock().failing = (count > 0).then_some((status, count));
    }

    pub(crate) fn uploads(&self) -> Vec<Upload> {
        self.lock().uploads.clone()
    }

    pub(crate) fn failures(&self) -> Vec<crate::MediaFailure> {
        self.lock().failures.clone()
    }

    pub(crate) fn record_failure(&self, failure: crate::MediaFailure) {
        self.lock().failures.push(failure);
    }

    /// The blob a message names: by its direct path, or by the encrypted file's
    /// hash when it gives no path.
    pub(crate) fn blob(&self, direct_path: Option<&str>, enc_sha256: &[u8]) -> Option<Blob> {
        let inner = self.lock();
        match direct_path {
            Some(path) => inner.blobs.get(path).cloned(),
            None => inner
                .blobs
                .values()
                .find(|b| b.enc_sha256 == enc_sha256)
                .cloned(),
        }
    }

    /// The blob of type `media` whose encrypted hash is `token`, if the host has it.
    fn kept(inner: &Inner, media: &str, token: &str) -> Option<Blob> {
        inner
            .blobs
            .values()
            .find(|b| b.media == media && URL_SAFE_NO_PAD.encode(b.enc_sha256) == token)
            .cloned()
    }

    /// Decides an upload's answer and keeps the blob when it passes: a failure
    /// asked for by a test first, then the session's token (401, so the client
    /// fetches a new one), then the hash (400).
    fn accept(
        &self,
        media: &str,
        token: &str,
        query: &UploadQuery,
        body: UploadedBody,
    ) -> Response {
        let mut inner = self.lock();
        let length = body.bytes.len() as u64;
        let refused = if let Some((status, left)) = inner.failing {
            inner.failing = (left > 1).then_some((status, left - 1));
            Some((status, "failing as asked"))
        } else if query.auth.as_deref() != Some(inner.auth.as_str()) {
            Some((StatusCode::UNAUTHORIZED, "bad auth"))
        } else if query.token.as_deref() != Some(token) {
            Some((
                StatusCode::BAD_REQUEST,
                "the token parameter differs from the path",
            ))
        } else if query.file_offset.is_some_and(|o| o != 0) {
            Some((StatusCode::BAD_REQUEST, "no partial upload to resume"))
        } else if URL_SAFE_NO_PAD.encode(body.sha256) != token {
            Some((StatusCode::BAD_REQUEST, "hash mismatch"))
        } else {
            None
        };
        let mut upload = Upload {
            media: media.to_owned(),
            token: token.to_owned(),
            length,
            status: StatusCode::OK.as_u16(),
            direct_path: None,
            at_ms: now_ms(),
        };
        if let Some((status, reason)) = refused {
            upload.status = status.as_u16();
            inner.uploads.push(upload);
            return (status, Json(json!({ "error": reason }))).into_response();
        }
        let blob = match Self::kept(&inner, media, token) {
            Some(blob) => blob,
            None => {
                let blob = new_blob(&inner.host, media, body);
                inner.blobs.insert(blob.direct_path.clone(), blob.clone());
                blob
            }
        };
        upload.direct_path = Some(blob.direct_path.clone());
        inner.uploads.push(upload);
        Json(json!({ "url": blob.url, "direct_path": blob.direct_path })).into_response()
    }

    /// Answers `?resume=1`: `complete` with the blob's addresses when the host has
    /// it, else offset 0, which the client reads as "upload it all".
    fn resume(&self, media: &str, token: &str, query: &UploadQuery) -> Response {
        let inner = self.lock();
        if query.auth.as_deref() != Some(inner.auth.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "bad auth" })),
            )
                .into_response();
        }
        match Self::kept(&inner, media, token) {
            Some(blob) => Json(json!({
                "resume": "complete",
                "url": blob.url,
                "direct_path": blob.direct_path,
            }))
            .into_response(),
            None => Json(json!({ "resume": "0" })).into_response(),
        }
    }
}

/// A new blob with a direct path no other has, shaped like WhatsApp's.
fn new_blob(host: &str, media: &str, body: UploadedBody) -> Blob {
    let kind = match media {
        "image" => "t62.7118-24",
        "document" => "t62.7119-24",
        "video" => "t62.7161-24",
        "audio" => "t62.7114-24",
        _ => "t62.15575-24",
    };
    let name = hex(&rand10::random::<[u8; 12]>());
    let direct_path = format!("/v/{kind}/{name}_n.enc");
    let url = format!(
        "https://{host}{direct_path}?ccb=11-4&oh=01_{}&oe={:08X}&_nc_sid=5e03e0&mms3=true",
        hex(&rand10::random::<[u8; 8]>()),
        now_ms() / 1000 + 14 * 86_400
    );
    Blob {
        media: media.to_owned(),
        enc_sha256: body.sha256,
        url,
        direct_path,
        bytes: body.bytes,
    }
}

/// Answers the `w:m` query: the session's upload token and this host.
pub(crate) fn media_conn_reply(shared: &Shared, node: &Node) -> Node {
    if node.get_optional_child("media_conn").is_none() {
        return result_for(node).build();
    }
    let host = shared.media.host();
    let answer = MediaConnResponseExtended::mock(
        shared.media.auth(),
        MEDIA_CONN_TTL,
        vec![MediaConnHostExtended::simple(host, HostType::Primary)],
    );
    result_for(node).children([answer.into_node()]).build()
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    auth: Option<String>,
    token: Option<String>,
    resume: Option<String>,
    file_offset: Option<u64>,
}

/// An upload's body, read once into one buffer, and its SHA-256.
struct UploadedBody {
    bytes: Bytes,
    sha256: [u8; 32],
}

#[cfg(test)]
mod tests {
    use wacore::iq::mediaconn::MediaConnSpec;
    use wacore::iq::spec::IqSpec as _;
    use wacore::request::RequestUtils;

    use crate::MockServer;
    use crate::conn::Outbound;

    /// Sends the library's own `media_conn` query; answers the reply node.
    async fn ask(mock: &MockServer, id: &str) -> wacore_binary::Node {
        let (connection, mut rx) = mock.shared.test_connection();
        let query = RequestUtils::new("mock".into())
            .build_iq_node(MediaConnSpec::new().build_iq(), Some(id.to_owned()));
        assert_eq!(crate::server::attr(&query, "xmlns").as_deref(), Some("w:m"));
        mock.shared.handle(connection, query);
        match rx.recv().await {
            Some(Outbound::Node(answer)) => *answer,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_media_conn_answer_parses_with_the_library_s_own_parser() {
        let mock = MockServer::start("6281100000001").await.unwrap();
        let answer = ask(&mock, "q-1").await;
        RequestUtils::new("mock".into())
            .parse_iq_response(&answer.as_node_ref())
            .unwrap();
        assert_eq!(crate::server::attr(&answer, "id").as_deref(), Some("q-1"));
        let conn = MediaConnSpec::new()
            .parse_response(&answer.as_node_ref())
            .unwrap();
        assert_eq!(conn.auth, mock.media_auth());
        assert!(conn.ttl > 0);
        assert_eq!(conn.hosts.len(), 1);
        assert_eq!(conn.hosts[0].hostname, mock.media_host());
        assert!(mock.media_host().starts_with("127.0.0.1:"));
        assert_ne!(mock.media_host(), "127.0.0.1:0");

        // A new token once the old one expired.
        mock.expire_media_auth();
        let renewed = MediaConnSpec::new()
            .parse_response(&ask(&mock, "q-2").await.as_node_ref())
            .unwrap();
        assert_eq!(renewed.auth, mock.media_auth());
        assert_ne!(renewed.auth, conn.auth);
    }
}
