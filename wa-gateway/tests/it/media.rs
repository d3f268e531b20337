//! Media through the gateway's `Send` (dry-run messenger): each source, the type
//! from the bytes, the same message id on a repeat, and every kind of bad media
//! answered with its reason (permanent or worth a retry), never a crash. The address
//! rules are checked against a gateway that keeps them.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tonic::{Code, Request};

use abtrack_e2e::media::{MediaServer, sample_jpeg, sample_pdf, sample_png};
use abtrack_proto::gateway::v1::{self as pb, media::Source};
use abtrack_wa_gateway::config::MediaLimits;
use abtrack_wa_gateway::media::{Preparer, Request as MediaRequest, Source as MediaSource};

use crate::support::{Options, TestGateway};

const LONG: Duration = Duration::from_secs(20);

fn send_media(job_id: &str, caption: &str, media: pb::Media) -> Request<pb::SendRequest> {
    let mut request = Request::new(pb::SendRequest {
        job_id: job_id.into(),
        to: "0812-3456-7890".into(),
        message: caption.into(),
        account: String::new(),
        media: Some(media),
    });
    request.set_timeout(LONG);
    request
}

fn media(source: Source, mime_type: &str, file_name: &str) -> pb::Media {
    pb::Media {
        source: Some(source),
        mime_type: mime_type.into(),
        file_name: file_name.into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The dry-run line of `job_id`.
fn line_of(gw: &TestGateway, job_id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(gw.data.join("dry-run.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["job_id"] == job_id)
        .unwrap_or_else(|| panic!("{job_id} was not sent"))
}

#[tokio::test]
async fn a_pdf_by_url_a_jpeg_and_a_png_inline_go_with_their_kind_type_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(dir.path(), Options::default()).await;
    let server = MediaServer::start().await;
    let pdf = sample_pdf(300 * 1024);
    server.put("rekap/Rekap-Oktober.pdf", pdf.clone());
    let png = sample_png(64, 48);
    let jpeg = sample_jpeg(120, 80);
    let mut client = gw.client.clone();
    let pdf_request = || {
        send_media(
            "pdf-1",
            "Rekap absensi Oktober",
            media(
                Source::Url(server.url("rekap/Rekap-Oktober.pdf")),
                "application/pdf",
                "",
            ),
        )
    };

    let sent = client.send(pdf_request()).await.unwrap().into_inner();
    let answered = sent.media.clone().unwrap();
    assert_eq!(answered.kind, "document");
    assert_eq!(answered.mime_type, "application/pdf");
    assert_eq!(answered.file_name, "Rekap-Oktober.pdf");
    assert_eq!(answered.size, pdf.len() as u64);
    let line = line_of(&gw, "pdf-1");
    assert_eq!(line["text"], "Rekap absensi Oktober");
    assert_eq!(line["media"]["sha256"], hex(&pdf));

    for (job, bytes, mime, name) in [
        ("png-1", &png, "image/png", ""),
        ("jpeg-1", &jpeg, "", "foto.jpg"),
    ] {
        let sent = client
            .send(send_media(
                job,
                "",
                media(Source::Data(bytes.clone()), mime, name),
            ))
            .await
            .unwrap()
            .into_inner();
        let answered = sent.media.unwrap();
        assert_eq!(answered.kind, "image", "{job}");
        assert_eq!(answered.file_name, "", "{job}: a photo shows no file name");
        let line = line_of(&gw, job);
        assert_eq!(line["media"]["sha256"], hex(bytes), "{job}");
        assert_eq!(line["text"], "", "{job}: no caption");
    }
    assert_eq!(line_of(&gw, "jpeg-1")["media"]["mimeType"], "image/jpeg");

    // The same job again: the same message, nothing fetched or sent again.
    let asked = server.asked().len();
    let again = client.send(pdf_request()).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(again.message_id, sent.message_id);
    assert_eq!(server.asked().len(), asked);
    assert_eq!(gw.sent_job_ids(), ["pdf-1", "png-1", "jpeg-1"]);
}

#[tokio::test]
async fn bad_media_is_refused_with_its_reason_and_a_busy_server_is_worth_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(dir.path(), Options::default()).await;
    let server = MediaServer::start().await;
    server.put("surat.pdf", sample_pdf(4096));
    server.put("empty.pdf", Vec::new());
    server.put(
        "broken.png",
        b"\x89PNG\r\n\x1a\n not really a picture".to_vec(),
    );
    let mut client = gw.client.clone();
    let bad: Vec<(&str, pb::Media, &str)> = vec![
        (
            "not-found",
            media(Source::Url(server.status_url(404)), "", ""),
            "answered HTTP 404",
        ),
        (
            "forbidden",
            media(Source::Url(server.status_url(403)), "", ""),
            "answered HTTP 403",
        ),
        (
            "contradicted",
            media(Source::Url(server.url("surat.pdf")), "image/png", ""),
            "mimeType says image/png, but the bytes are application/pdf",
        ),
        (
            "not-an-image",
            media(Source::Data(b"just some text".to_vec()), "image/jpeg", ""),
            "no image WhatsApp shows",
        ),
        (
            "empty",
            media(Source::Url(server.url("empty.pdf")), "", ""),
            "is empty",
        ),
        (
            "undecodable",
            media(Source::Url(server.url("broken.png")), "", ""),
            "the image cannot be read",
        ),
        (
            "ftp",
            media(Source::Url("ftp://example.org/a.pdf".into()), "", ""),
            "must start with https://",
        ),
        (
            "unreachable-name",
            media(
                Source::Url("https://no-such-host.invalid/a.pdf?X-Goog-Signature=SECRET".into()),
                "",
                "",
            ),
            "",
        ),
    ];
    for (job, media, reason) in bad {
        let err = client.send(send_media(job, "x", media)).await.unwrap_err();
        if job == "unreachable-name" {
            // A name that does not resolve may resolve later: worth a retry.
            assert_eq!(err.code(), Code::Aborted, "{job}: {err:?}");
            assert_eq!(
                abtrack_proto::reason::reason(&err),
                Some("media_unavailable")
            );
            // The error becomes the job's: the URL's signature stays out of it.
            assert!(!err.message().contains("SECRET"), "{}", err.message());
            continue;
        }
        assert_eq!(err.code(), Code::InvalidArgument, "{job}: {err:?}");
        assert_eq!(
            abtrack_proto::reason::reason(&err),
            Some("bad_media"),
            "{job}"
        );
        assert!(err.message().contains(reason), "{job}: {}", err.message());
    }
    for code in [500, 503, 429] {
        let err = client
            .send(send_media(
                &format!("busy-{code}"),
                "x",
                media(Source::Url(server.status_url(code)), "", ""),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Aborted, "{code}: {err:?}");
        assert_eq!(
            abtrack_proto::reason::reason(&err),
            Some("media_unavailable")
        );
    }
    // Nothing was sent, and the gateway still sends.
    assert!(gw.sent_job_ids().is_empty());
    client
        .send(send_media(
            "after",
            "x",
            media(Source::Url(server.url("surat.pdf")), "", ""),
        ))
        .await
        .unwrap();
    assert_eq!(gw.sent_job_ids(), ["after"]);
}

fn url_request(url: String) -> MediaRequest {
    MediaRequest {
        source: MediaSource::Url(url),
        mime_type: None,
        file_name: None,
    }
}

#[tokio::test]
async fn the_address_rules_refuse_loopback_names_redirects_and_plain_http_and_cap_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = MediaServer::start().await;
    server.put("surat.pdf", sample_pdf(4096));
    server.put("big.pdf", sample_pdf(1536 * 1024));
    let port = server.addr.port();
    let refused = |preparer: Preparer, url: String, why: &'static str| async move {
        match preparer.prepare(&url_request(url.clone())).await {
            Err(abtrack_wa_gateway::Error::BadMedia(text)) => {
                assert!(text.contains(why), "{url}: {text}")
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    };
    // A file a stopped gateway left behind is removed at start.
    std::fs::create_dir_all(dir.path().join("strict")).unwrap();
    std::fs::write(dir.path().join("strict").join(".tmpLeft"), b"half a file").unwrap();
    let strict = Preparer::new(
        MediaLimits {
            allow_http: true,
            ..MediaLimits::default()
        },
        dir.path().join("strict"),
    )
    .unwrap();
    assert!(!dir.path().join("strict").join(".tmpLeft").exists());
    // A written address, a name that resolves to loopback, and a redirect there.
    refused(
        strict.clone(),
        server.url("surat.pdf"),
        "loopback, private or link-local",
    )
    .await;
    refused(
        strict.clone(),
        format!("http://localhost:{port}/files/surat.pdf"),
        "loopback, private or link-local",
    )
    .await;
    refused(
        strict.clone(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "loopback, private or link-local",
    )
    .await;
    let https_only = Preparer::new(MediaLimits::default(), dir.path().join("https")).unwrap();
    refused(
        https_only,
        "http://example.org/a.pdf".into(),
        "only https:// is fetched",
    )
    .await;

    let open = MediaLimits {
        allow_http: true,
        allow_private: true,
        max_document_bytes: 1 << 20,
        max_redirects: 2,
        ..MediaLimits::default()
    };
    let preparer = Preparer::new(open.clone(), dir.path().join("open")).unwrap();
    let fine = preparer
        .prepare(&url_request(server.redirect_url(&server.url("surat.pdf"))))
        .await
        .unwrap();
    assert_eq!(fine.kind, abtrack_proto::media::Kind::Document);
    refused(preparer.clone(), server.url("big.pdf"), "is too large").await;
    let hops =
        server.redirect_url(&server.redirect_url(&server.redirect_url(&server.url("surat.pdf"))));
    refused(preparer.clone(), hops, "redirects more than 2 times").await;
    // A redirect from an allowed server to a refused address is refused too.
    let guarded = Preparer::new(
        MediaLimits {
            allow_http: true,
            ..MediaLimits::default()
        },
        dir.path().join("guarded"),
    )
    .unwrap();
    refused(
        guarded,
        format!("http://localhost:{port}/redirect?to=http://127.0.0.1:{port}/files/surat.pdf"),
        "loopback, private or link-local",
    )
    .await;
    drop(fine);
    // Nothing is left behind in the staging folders.
    for sub in ["strict", "open", "guarded"] {
        let left = std::fs::read_dir(dir.path().join(sub))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "{sub}");
    }
}
