//! Test support for media: a local HTTP server that serves files by URL and Cloud
//! Storage objects the way the storage JSON API's download endpoint does (a stand-in
//! for Firebase Storage), answers chosen HTTP errors and redirects, and counts what
//! it was asked; and sample files (a PDF, a JPEG, a PNG) of a chosen size.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Default)]
struct Files {
    /// Path under `/files/` to its bytes.
    files: HashMap<String, Vec<u8>>,
    /// `bucket/object` to its bytes.
    objects: HashMap<String, Vec<u8>>,
    /// The bearer token objects need; `None`: any.
    token: Option<String>,
    /// Every path asked for, in order.
    asked: Vec<String>,
}

/// A running media server; stops when dropped.
pub struct MediaServer {
    pub addr: SocketAddr,
    files: Arc<Mutex<Files>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MediaServer {
    pub async fn start() -> Self {
        let files = Arc::new(Mutex::new(Files::default()));
        let app = Router::new()
            .route("/files/{*path}", get(file))
            .route("/status/{code}", get(status))
            .route("/redirect", get(redirect))
            .route("/download/storage/v1/b/{bucket}/o/{object}", get(object))
            .with_state(Arc::clone(&files));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, files, task }
    }

    /// Serves `bytes` at [`MediaServer::url`]`(path)`.
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .unwrap()
            .files
            .insert(path.to_owned(), bytes);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/files/{path}", self.addr)
    }

    /// A URL answering `code`.
    pub fn status_url(&self, code: u16) -> String {
        format!("http://{}/status/{code}", self.addr)
    }

    /// A URL redirecting to `to`.
    pub fn redirect_url(&self, to: &str) -> String {
        format!("http://{}/redirect?to={}", self.addr, encode(to))
    }

    /// Keeps `bytes` as the object `gs://bucket/object`.
    pub fn put_object(&self, bucket: &str, object: &str, bytes: Vec<u8>) {
        self.files
            .lock()
            .unwrap()
            .objects
            .insert(format!("{bucket}/{object}"), bytes);
    }

    /// The value for `STORAGE_EMULATOR_HOST`.
    pub fn storage_host(&self) -> String {
        self.addr.to_string()
    }

    /// Every path asked for, in order.
    pub fn asked(&self) -> Vec<String> {
        self.files.lock().unwrap().asked.clone()
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn bytes_response(bytes: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(bytes),
    )
        .into_response()
}

async fn file(State(files): State<Arc<Mutex<Files>>>, Path(path): Path<String>) -> Response {
    let mut files = files.lock().unwrap();
    files.asked.push(format!("/files/{path}"));
    match files.files.get(&path) {
        Some(bytes) => bytes_response(bytes.clone()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn status(State(files): State<Arc<Mutex<Files>>>, Path(code): Path<u16>) -> Response {
    files.lock().unwrap().asked.push(format!("/status/{code}"));
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

async fn redirect(
    State(files): State<Arc<Mutex<Files>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    files.lock().unwrap().asked.push("/redirect".into());
    let to = query.get("to").cloned().unwrap_or_default();
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// `GET /download/storage/v1/b/{bucket}/o/{object}?alt=media`, as Cloud Storage
/// answers it: the object's bytes, 404 for no such object, 401 without the token.
async fn object(
    State(files): State<Arc<Mutex<Files>>>,
    Path((bucket, object)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut files = files.lock().unwrap();
    files
        .asked
        .push(format!("/download/storage/v1/b/{bucket}/o/{object}"));
    if query.get("alt").map(String::as_str) != Some("media") {
        return (StatusCode::BAD_REQUEST, "only alt=media is served").into_response();
    }
    if let Some(token) = &files.token {
        let expected = format!("Bearer {token}");
        if headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(&expected)
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    match files.objects.get(&format!("{bucket}/{object}")) {
        Some(bytes) => bytes_response(bytes.clone()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A valid PDF of about `size` bytes (a page, and a comment stream to fill it).
pub fn sample_pdf(size: usize) -> Vec<u8> {
    let filler: String = (0..size.saturating_sub(600))
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>".to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{filler}\nendstream",
            filler.len() + 1
        ),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// Pixels that do not compress away: a JPEG or PNG of them stays large.
fn noise(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..width * height * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// A JPEG photo of `width` x `height` pixels of noise (1000 x 700 is about 2 MB).
pub fn sample_jpeg(width: u32, height: u32) -> Vec<u8> {
    encode_image(width, height, image_format::Jpeg)
}

/// A PNG picture of `width` x `height` pixels of noise.
pub fn sample_png(width: u32, height: u32) -> Vec<u8> {
    encode_image(width, height, image_format::Png)
}

mod image_format {
    pub use image::ImageFormat::{Jpeg, Png};
}

fn encode_image(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::RgbImage::from_raw(width, height, noise(width, height)).unwrap();
    let mut out = Vec::new();
    if format == image::ImageFormat::Jpeg {
        let mut cursor = std::io::Cursor::new(&mut out);
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut cursor, 100);
        pixels.write_with_encoder(encoder).unwrap();
    } else {
        pixels
            .write_to(&mut std::io::Cursor::new(&mut out), format)
            .unwrap();
    }
    out
}
