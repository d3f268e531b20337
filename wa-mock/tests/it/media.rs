//! The mock's media host over real HTTPS, driven by the library's own HTTP client
//! (the one `whatsapp-rust` uploads and downloads with) and its own media crypto:
//! uploads are checked and kept as WhatsApp's CDN does, refused as it refuses, and
//! served back so the library's download path opens them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use wacore::download::{DownloadUtils, MediaHost, MediaRoute, MediaType};
use wacore::net::{HttpClient as _, HttpRequest, HttpResponse};
use wacore::upload::{EncryptedMedia, encrypt_media};
use waproto::whatsapp as wa;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

use abtrack_wa_mock::MockServer;

/// The upload request `whatsapp-rust` builds (`build_upload_request`).
fn upload_request(host: &str, media_type: MediaType, auth: &str, token: &str) -> HttpRequest {
    let path = media_type.upload_path();
    HttpRequest::post(format!(
        "https://{host}{path}/{token}?auth={auth}&token={token}"
    ))
    .with_header("Content-Type", "application/octet-stream")
    .with_header("Origin", "https://web.whatsapp.com")
}

/// The resume check `whatsapp-rust` sends first for files of 5 MiB and more.
fn resume_request(host: &str, media_type: MediaType, auth: &str, token: &str) -> HttpRequest {
    let path = media_type.upload_path();
    HttpRequest::post(format!(
        "https://{host}{path}/{token}?auth={auth}&token={token}&resume=1"
    ))
    .with_header("Origin", "https://web.whatsapp.com")
}

fn token(enc: &EncryptedMedia) -> String {
    URL_SAFE_NO_PAD.encode(enc.file_enc_sha256)
}

async fn post(request: HttpRequest, body: &[u8]) -> HttpResponse {
    UreqHttpClient::new()
        .execute(request.with_body(body.to_vec()))
        .await
        .unwrap()
}

fn json(response: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap()
}

/// Downloads what `image` names as the library's download path builds the URL, and
/// decrypts it with the library's media decryption.
async fn download(mock: &MockServer, image: &wa::message::ImageMessage) -> Vec<u8> {
    let route =
        MediaRoute::authenticated(vec![MediaHost::new(mock.media_host())], mock.media_auth());
    let requests = DownloadUtils::prepare_download_requests(image, &route).unwrap();
    let response = UreqHttpClient::new()
        .execute(HttpRequest::get(requests[0].url.clone()))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    DownloadUtils::verify_and_decrypt(
        &response.body,
        image.media_key.as_deref().unwrap(),
        MediaType::Image,
    )
    .unwrap()
}

#[tokio::test]
async fn an_upload_is_kept_and_opens_with_its_key_after_the_library_downloads_it() {
    let mock = MockServer::start("6281100000001").await.unwrap();
    let plain: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let enc = encrypt_media(&plain, MediaType::Image).unwrap();
    let request = upload_request(
        &mock.media_host(),
        MediaType::Image,
        &mock.media_auth(),
        &token(&enc),
    );
    let response = post(request, &enc.data_to_upload).await;
    assert_eq!(response.status_code, 200, "{:?}", response.body_string());
    let answer = json(&response);
    let direct_path = answer["direct_path"].as_str().unwrap();
    let url = answer["url"].as_str().unwrap();
    assert!(direct_path.starts_with("/v/t62.7118-24/"), "{direct_path}");
    assert!(
        url.starts_with(&format!("https://{}{direct_path}?", mock.media_host())),
        "{url}"
    );

    let uploads = mock.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].media, "image");
    assert_eq!(uploads[0].token, token(&enc));
    assert_eq!(uploads[0].length, enc.data_to_upload.len() as u64);
    assert_eq!(uploads[0].status, 200);
    assert_eq!(uploads[0].direct_path.as_deref(), Some(direct_path));

    let image = wa::message::ImageMessage {
        direct_path: Some(direct_path.to_owned()),
        media_key: Some(enc.media_key.to_vec()),
        file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
        file_sha256: Some(enc.file_sha256.to_vec()),
        ..Default::default()
    };
    assert_eq!(download(&mock, &image).await, plain);

    // Another key does not open it.
    let stored = {
        let route = MediaRoute::unauthenticated(vec![MediaHost::new(mock.media_host())]);
        let url = DownloadUtils::prepare_download_requests(&image, &route).unwrap()[0]
            .url
            .clone();
        UreqHttpClient::new()
            .execute(HttpRequest::get(url))
            .await
            .unwrap()
            .body
    };
    assert_eq!(stored, enc.data_to_upload);
    assert!(DownloadUtils::verify_and_decrypt(&stored, &[9; 32], MediaType::Image).is_err());
}

#[tokio::test]
async fn a_wrong_auth_gets_401_a_wrong_token_400_and_neither_is_kept() {
    let mock = MockServer::start("6281100000001").await.unwrap();
    let host = mock.media_host();
    let enc = encrypt_media(b"a small picture", MediaType::Image).unwrap();
    let other = encrypt_media(b"another picture", MediaType::Image).unwrap();

    let wrong_auth = upload_request(&host, MediaType::Image, "not-the-token", &token(&enc));
    assert_eq!(post(wrong_auth, &enc.data_to_upload).await.status_code, 401);

    // The body is not the file the token names.
    let wrong_token = upload_request(&host, MediaType::Image, &mock.media_auth(), &token(&other));
    assert_eq!(
        post(wrong_token, &enc.data_to_upload).await.status_code,
        400
    );

    // An expired token: the client's cue to ask for a new one.
    let old = mock.media_auth();
    mock.expire_media_auth();
    let expired = upload_request(&host, MediaType::Image, &old, &token(&enc));
    assert_eq!(post(expired, &enc.data_to_upload).await.status_code, 401);

    let unknown = upload_request(
        &host,
        MediaType::ProductCatalogImage,
        &mock.media_auth(),
        &token(&enc),
    );
    assert_eq!(post(unknown, &enc.data_to_upload).await.status_code, 404);

    let statuses: Vec<u16> = mock.uploads().iter().map(|u| u.status).collect();
    assert_eq!(statuses, [401, 400, 401]);
    assert!(mock.uploads().iter().all(|u| u.direct_path.is_none()));

    let fresh = upload_request(&host, MediaType::Image, &mock.media_auth(), &token(&enc));
    assert_eq!(post(fresh, &enc.data_to_upload).await.status_code, 200);
}

#[tokio::test]
async fn uploads_fail_as_often_as_asked_then_pass() {
    let mock = MockServer::start("6281100000001").await.unwrap();
    let enc = encrypt_media(b"%PDF-1.4 tiny", MediaType::Document).unwrap();
    mock.fail_uploads(503, 2);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let request = upload_request(
            &mock.media_host(),
            MediaType::Document,
            &mock.media_auth(),
            &token(&enc),
        );
        statuses.push(post(request, &enc.data_to_upload).await.status_code);
    }
    assert_eq!(statuses, [503, 503, 200]);
    let uploads = mock.uploads();
    assert_eq!(uploads.len(), 3);
    assert!(
        uploads[2]
            .direct_path
            .as_deref()
            .unwrap()
            .starts_with("/v/t62.7119-24/")
    );
}

#[tokio::test]
async fn a_large_streamed_upload_is_taken_and_found_by_the_resume_check() {
    let mock = MockServer::start("6281100000001").await.unwrap();
    let host = mock.media_host();
    // Past the 5 MiB where the library checks for an earlier upload, and past
    // axum's default body limit.
    let plain: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let enc = encrypt_media(&plain, MediaType::Document).unwrap();
    let auth = mock.media_auth();

    let before = post(
        resume_request(&host, MediaType::Document, &auth, &token(&enc)),
        &[],
    )
    .await;
    assert_eq!(before.status_code, 200);
    // Offset 0: the library uploads the whole file.
    assert_eq!(json(&before)["resume"], "0");

    // Streamed with a Content-Length, as `Client::upload_stream` sends it.
    let request = upload_request(&host, MediaType::Document, &auth, &token(&enc));
    let body = enc.data_to_upload.clone();
    let response = tokio::task::spawn_blocking(move || {
        let length = body.len() as u64;
        UreqHttpClient::new().execute_upload(request, Box::new(std::io::Cursor::new(body)), length)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status_code, 200, "{:?}", response.body_string());
    let answer = json(&response);

    let after = post(
        resume_request(&host, MediaType::Document, &auth, &token(&enc)),
        &[],
    )
    .await;
    let found = json(&after);
    assert_eq!(found["resume"], "complete");
    assert_eq!(found["direct_path"], answer["direct_path"]);
    assert_eq!(found["url"], answer["url"]);
    // A resume check is no upload.
    assert_eq!(mock.uploads().len(), 1);
    assert_eq!(mock.uploads()[0].length, enc.data_to_upload.len() as u64);
}
