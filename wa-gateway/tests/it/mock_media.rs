//! Media through the four services as processes, the gateway's real client on the
//! mock WhatsApp server: a PDF by URL, a JPEG from a storage object (the local
//! stand-in for Cloud Storage) and a PNG inline reach their recipient byte for byte
//! with caption and file name, each `sent` once WhatsApp's server acked it; bad media
//! fails with its reason while the texts between them go; and a gateway killed after
//! the upload, before the ack, sends the document once.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use abtrack_e2e::Cluster;
use abtrack_e2e::media::{MediaServer, sample_jpeg, sample_pdf, sample_png};
use abtrack_proto::time::parse_rfc3339;
use abtrack_wa_mock::{AckBehaviour, MediaKind, MockServer};

use crate::mock_cluster::{enqueue, linked_cluster, wait_job};
use crate::mock_whatsapp::PHONE;
use crate::server_ack::ack_at;

const WAIT: Duration = Duration::from_secs(90);

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Enqueues a job with `media` through the REST API; answers its id.
async fn enqueue_media(cluster: &Cluster, to: &str, caption: &str, media: Value) -> String {
    let local = format!("0{}", &to[2..]);
    let (code, job) = cluster
        .post(
            "/api/messages",
            json!({ "to": local, "message": caption, "media": media }).to_string(),
        )
        .await;
    assert_eq!(code, 201, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// The services' media settings: the local media server is on loopback over http.
fn media_env(server: &MediaServer) -> Vec<(&'static str, String)> {
    vec![
        ("WA_MEDIA_ALLOW_HTTP", "true".to_owned()),
        ("WA_MEDIA_ALLOW_PRIVATE", "true".to_owned()),
        ("STORAGE_EMULATOR_HOST", server.storage_host()),
    ]
}

/// The four services linked on `mock`, with `env` on top.
async fn linked_with(mock: &MockServer, env: &[(&'static str, String)]) -> Cluster {
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    linked_cluster(mock, &extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pdf_a_jpeg_and_a_png_from_a_url_a_storage_object_and_inline_bytes_arrive_whole() {
    const TO: &str = "6281200000031";
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(TO);
    let server = MediaServer::start().await;
    let pdf = sample_pdf(300 * 1024);
    let jpeg = sample_jpeg(1000, 700);
    let png = sample_png(200, 150);
    assert!(jpeg.len() > 1_500_000, "the JPEG is {} bytes", jpeg.len());
    server.put("rekap-oktober.pdf", pdf.clone());
    server.put_object(
        "demo-abtrack.appspot.com",
        "foto/kegiatan.jpg",
        jpeg.clone(),
    );
    let mut env = media_env(&server);
    env.push(("DISPATCHER_BACKOFF_BASE_SECS", "1".to_owned()));
    env.push(("DISPATCHER_BACKOFF_MAX_SECS", "1".to_owned()));
    let cluster = linked_with(&mock, &env).await;
    // WhatsApp's media host refuses the first upload: the job is tried again.
    mock.fail_uploads(503, 1);

    let pdf_job = enqueue_media(
        &cluster,
        TO,
        "Rekap absensi Oktober",
        json!({ "url": server.url("rekap-oktober.pdf"), "mimeType": "application/pdf", "fileName": "Rekap Oktober.pdf" }),
    )
    .await;
    let jpeg_job = enqueue_media(
        &cluster,
        TO,
        "Foto kegiatan",
        json!({ "url": "gs://demo-abtrack.appspot.com/foto/kegiatan.jpg" }),
    )
    .await;
    use base64::Engine as _;
    let png_job = enqueue_media(
        &cluster,
        TO,
        "",
        json!({ "data": base64::engine::general_purpose::STANDARD.encode(&png), "mimeType": "image/png" }),
    )
    .await;
    let text_job = enqueue(&cluster, TO, "Ananda tiba di sekolah").await;

    // Each `sent` once WhatsApp's server acked the message, not before.
    for id in [&pdf_job, &jpeg_job, &png_job, &text_job] {
        let job = wait_job(&cluster, id, "sent", |j| j["status"] == "sent").await;
        let message_id = job["messageId"].as_str().unwrap();
        let sent_at = parse_rfc3339(job["sentAt"].as_str().unwrap()).unwrap();
        let acked = ack_at(&mock, message_id).unwrap_or_else(|| panic!("no ack for {job}"));
        assert!(sent_at >= acked, "sentAt before the ack: {job}");
    }
    assert!(mock.wait_for(WAIT, |m| m.received().len() >= 4).await);
    let received = mock.received();
    let find = |message_id: &str| {
        received
            .iter()
            .find(|r| r.message_id == message_id)
            .cloned()
            .unwrap_or_else(|| panic!("{message_id} never reached the recipient"))
    };
    let job_of = |id: &str| {
        let cluster = &cluster;
        let id = id.to_owned();
        async move { cluster.get(&format!("/api/jobs/{id}")).await }
    };

    let pdf_sent = job_of(&pdf_job).await;
    let got = find(pdf_sent["messageId"].as_str().unwrap());
    let media = got.media.expect("the PDF arrived as media");
    assert_eq!(media.kind, MediaKind::Document);
    assert_eq!(media.sha256_hex(), hex(&pdf));
    assert_eq!(media.mime_type, "application/pdf");
    assert_eq!(media.file_name.as_deref(), Some("Rekap Oktober.pdf"));
    assert_eq!(got.text, "Rekap absensi Oktober");
    assert_eq!(pdf_sent["media"]["kind"], "document", "{pdf_sent}");
    assert_eq!(
        pdf_sent["media"]["fileName"], "Rekap Oktober.pdf",
        "{pdf_sent}"
    );

    let jpeg_sent = job_of(&jpeg_job).await;
    let got = find(jpeg_sent["messageId"].as_str().unwrap());
    let media = got.media.expect("the JPEG arrived as media");
    assert_eq!(media.kind, MediaKind::Image);
    assert_eq!(media.sha256_hex(), hex(&jpeg));
    assert_eq!(media.mime_type, "image/jpeg");
    assert_eq!((media.width, media.height), (Some(1000), Some(700)));
    assert!(
        media
            .thumbnail
            .as_ref()
            .is_some_and(|t| t.starts_with(&[0xff, 0xd8]))
    );
    assert_eq!(got.text, "Foto kegiatan");
    assert!(
        server.asked().contains(
            &"/download/storage/v1/b/demo-abtrack.appspot.com/o/foto/kegiatan.jpg".to_owned()
        ),
        "{:?}",
        server.asked()
    );

    let png_sent = job_of(&png_job).await;
    let got = find(png_sent["messageId"].as_str().unwrap());
    let media = got.media.expect("the PNG arrived as media");
    assert_eq!(media.kind, MediaKind::Image);
    assert_eq!(media.sha256_hex(), hex(&png));
    assert_eq!(media.mime_type, "image/png");
    assert_eq!(got.text, "");

    let text_sent = job_of(&text_job).await;
    let got = find(text_sent["messageId"].as_str().unwrap());
    assert!(got.media.is_none());
    assert_eq!(got.text, "Ananda tiba di sekolah");
    // Each message acked by WhatsApp's server once, and each file kept once; the
    // PDF's first upload was refused and its job retried.
    assert_eq!(mock.received().len(), 4);
    let statuses: Vec<u16> = mock.uploads().iter().map(|u| u.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        1,
        "{statuses:?}"
    );
    let steps = &pdf_sent["steps"];
    assert!(
        steps
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "retry_later"
                && s["error"]["code"] == "media_unavailable"
                && s["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("the upload to WhatsApp's media servers failed")),
        "{steps}"
    );
    assert!(
        mock.media_failures().is_empty(),
        "{:?}",
        mock.media_failures()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_fails_with_its_reason_while_the_texts_between_go() {
    const TO: &str = "6281200000032";
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(TO);
    let server = MediaServer::start().await;
    server.put("surat.pdf", sample_pdf(8 * 1024));
    server.put("big.pdf", sample_pdf(1536 * 1024));
    let mut env = media_env(&server);
    env.push(("WA_MEDIA_MAX_DOCUMENT_MB", "1".to_owned()));
    env.push(("DISPATCHER_MAX_ATTEMPTS", "2".to_owned()));
    env.push(("DISPATCHER_BACKOFF_BASE_SECS", "1".to_owned()));
    env.push(("DISPATCHER_BACKOFF_MAX_SECS", "1".to_owned()));
    let cluster = linked_with(&mock, &env).await;

    let corpus: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "url": server.status_url(404) }),
            "bad_media",
            "answered HTTP 404",
        ),
        (
            json!({ "url": server.url("big.pdf") }),
            "bad_media",
            "is too large",
        ),
        (
            json!({ "url": server.url("surat.pdf"), "mimeType": "image/jpeg" }),
            "bad_media",
            "mimeType says image/jpeg, but the bytes are application/pdf",
        ),
        (
            json!({ "data": "aGFsbG8gZHVuaWE=", "mimeType": "image/png" }),
            "bad_media",
            "no image WhatsApp shows",
        ),
        (
            json!({ "url": "gs://demo-abtrack.appspot.com/tidak-ada.pdf" }),
            "bad_media",
            "answered HTTP 404",
        ),
        (
            json!({ "url": server.status_url(503) }),
            "media_unavailable",
            "answered HTTP 503",
        ),
    ];
    let mut bad = Vec::new();
    let mut texts = Vec::new();
    for (n, (media, code, reason)) in corpus.into_iter().enumerate() {
        bad.push((
            enqueue_media(&cluster, TO, "lampiran", media).await,
            code,
            reason,
        ));
        texts.push(enqueue(&cluster, TO, &format!("pesan {n}")).await);
    }
    for (id, code, reason) in &bad {
        let job = wait_job(&cluster, id, "failed", |j| j["status"] == "failed").await;
        assert_eq!(job["lastError"]["code"], *code, "{job}");
        assert!(
            job["lastError"]["message"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{job}"
        );
    }
    for id in &texts {
        wait_job(&cluster, id, "sent", |j| j["status"] == "sent").await;
    }
    // Only the texts reached the recipient.
    let received = mock.received();
    assert_eq!(received.len(), texts.len());
    assert!(received.iter().all(|r| r.media.is_none()));
    assert!(mock.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_after_the_upload_and_before_the_ack_sends_the_document_once() {
    const TO: &str = "6281200000033";
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(TO);
    // The recipient gets the message; WhatsApp's answer takes ten minutes.
    mock.set_behaviour(TO, AckBehaviour::Slow(Duration::from_secs(600)));
    let server = MediaServer::start().await;
    let pdf = sample_pdf(300 * 1024);
    server.put("surat-izin.pdf", pdf.clone());
    let mut env = media_env(&server);
    env.push(("WA_SERVER_ACK_TIMEOUT_MS", "600000".to_owned()));
    env.push(("DISPATCHER_SEND_TIMEOUT_SECS", "600".to_owned()));
    env.push(("DISPATCHER_LEASE_SECS", "900".to_owned()));
    env.push(("DISPATCHER_BACKOFF_BASE_SECS", "1".to_owned()));
    env.push(("DISPATCHER_BACKOFF_MAX_SECS", "2".to_owned()));
    let mut cluster = linked_with(&mock, &env).await;

    let job_id = enqueue_media(
        &cluster,
        TO,
        "Surat izin",
        json!({ "url": server.url("surat-izin.pdf") }),
    )
    .await;
    assert!(
        mock.wait_for(WAIT, |m| m.received().iter().any(|r| r.media.is_some()))
            .await,
        "the document never reached the recipient"
    );
    let first = mock
        .received()
        .into_iter()
        .find(|r| r.media.is_some())
        .unwrap();
    let job = cluster.get(&format!("/api/jobs/{job_id}")).await;
    assert_eq!(job["status"], "processing", "{job}");

    cluster.kill("wa-gateway");
    mock.set_behaviour(TO, AckBehaviour::Normal);
    cluster.spawn("wa-gateway");
    cluster.wait_serving("wa-gateway").await;
    let job = wait_job(&cluster, &job_id, "sent after the restart", |j| {
        j["status"] == "sent"
    })
    .await;
    assert_eq!(job["messageId"], first.message_id.as_str(), "{job}");
    // The file went up twice; the recipient has the document once.
    assert_eq!(mock.uploads().iter().filter(|u| u.status == 200).count(), 2);
    let copies: Vec<_> = mock
        .received()
        .into_iter()
        .filter(|r| r.media.is_some())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].media.as_ref().unwrap().sha256_hex(), hex(&pdf));
    assert!(
        mock.stanzas()
            .iter()
            .filter(|s| s.message_id == first.message_id)
            .count()
            >= 2,
        "the message went again under its id"
    );
}
