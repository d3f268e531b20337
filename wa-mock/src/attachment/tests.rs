//! A contact's phone opening media messages: each message is Signal-encrypted as a
//! sender's library would, handed to the server as a `<message>` stanza, and read
//! back from what the contact received, or from the media failures.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use wacore::download::MediaType;
use wacore::net::{HttpClient as _, HttpRequest};
use wacore::upload::{EncryptedMedia, encrypt_media};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use wacore_libsignal::protocol::{PreKeyBundle, ProtocolAddress};
use waproto::whatsapp as wa;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

use crate::conn::Outbound;
use crate::server::attr;
use crate::signal::Contact;
use crate::{MediaKind, MockServer};

const PHONE: &str = "6281100000001";
const CONTACT: &str = "6281200000002";
const WAIT: Duration = Duration::from_secs(20);

/// An uploaded file: the library's encryption of it and where the host keeps it.
struct Uploaded {
    plain: Vec<u8>,
    enc: EncryptedMedia,
    url: String,
    direct_path: String,
}

/// Encrypts and uploads `plain` as `whatsapp-rust`'s `Client::upload` does.
async fn upload(mock: &MockServer, plain: Vec<u8>, media_type: MediaType) -> Uploaded {
    let enc = encrypt_media(&plain, media_type).unwrap();
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        enc.file_enc_sha256,
    );
    let url = format!(
        "https://{}{}/{token}?auth={}&token={token}",
        mock.media_host(),
        media_type.upload_path(),
        mock.media_auth()
    );
    let request = HttpRequest::post(url)
        .with_header("Content-Type", "application/octet-stream")
        .with_body(enc.data_to_upload.clone());
    let response = UreqHttpClient::new().execute(request).await.unwrap();
    assert_eq!(response.status_code, 200, "{:?}", response.body_string());
    let answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    Uploaded {
        plain,
        enc,
        url: answer["url"].as_str().unwrap().to_owned(),
        direct_path: answer["direct_path"].as_str().unwrap().to_owned(),
    }
}

fn image(file: &Uploaded, caption: Option<&str>) -> wa::message::ImageMessage {
    wa::message::ImageMessage {
        url: Some(file.url.clone()),
        direct_path: Some(file.direct_path.clone()),
        media_key: Some(file.enc.media_key.to_vec()),
        file_sha256: Some(file.enc.file_sha256.to_vec()),
        file_enc_sha256: Some(file.enc.file_enc_sha256.to_vec()),
        file_length: Some(file.plain.len() as u64),
        mimetype: Some("image/jpeg".into()),
        caption: caption.map(str::to_owned),
        width: Some(640),
        height: Some(480),
        jpeg_thumbnail: Some(vec![0xff, 0xd8, 0xff, 0xd9]),
        ..Default::default()
    }
}

fn image_message(image: wa::message::ImageMessage) -> wa::Message {
    wa::Message {
        image_message: buffa::MessageField::some(image),
        ..Default::default()
    }
}

/// The first phone's device 1 sending to [`CONTACT`] through the server.
struct Sender {
    phone: Contact,
    bundle: PreKeyBundle,
    connection: u64,
    rx: UnboundedReceiver<Outbound>,
}

impl Sender {
    fn new(mock: &MockServer) -> Self {
        mock.add_contact(CONTACT);
        let bundle = mock
            .shared
            .lock()
            .contacts
            .get_mut(CONTACT)
            .unwrap()
            .pre_key_bundle();
        let (connection, rx) = mock.shared.test_connection();
        Self {
            phone: Contact::generate(),
            bundle,
            connection,
            rx,
        }
    }

    /// Sends `message` under `id`; answers the server's ack.
    async fn send(&mut self, mock: &MockServer, id: &str, message: &wa::Message) -> Node {
        let to = ProtocolAddress::new(CONTACT, 0u32.into());
        let (kind, payload) = self.phone.seal(&to, &self.bundle, message).await;
        let stanza = NodeBuilder::new("message")
            .attr("id", id.to_owned())
            .attr("to", Jid::pn(CONTACT))
            .attr("type", "media")
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", kind)
                .bytes(payload)
                .build()])
            .build();
        mock.shared.handle(self.connection, stanza);
        loop {
            match tokio::time::timeout(WAIT, self.rx.recv()).await {
                Ok(Some(Outbound::Node(node))) if node.tag == "ack" => return *node,
                Ok(Some(_)) => {}
                other => panic!("no ack for {id}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn images_and_documents_arrive_decrypted_and_text_still_does() {
    let mock = MockServer::start(PHONE).await.unwrap();
    let mut sender = Sender::new(&mock);
    let picture: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = upload(&mock, picture, MediaType::Image).await;

    let ack = sender
        .send(
            &mock,
            "img-1",
            &image_message(image(&file, Some("Invoice 7"))),
        )
        .await;
    assert_eq!(attr(&ack, "error"), None);
    let received = mock.received();
    assert_eq!(received.len(), 1, "{:?}", mock.media_failures());
    assert_eq!(received[0].text, "Invoice 7");
    assert_eq!(
        (received[0].from.as_str(), received[0].to.as_str()),
        (PHONE, CONTACT)
    );
    let media = received[0].media.as_ref().unwrap();
    assert_eq!(media.kind, MediaKind::Image);
    assert_eq!(media.mime_type, "image/jpeg");
    assert_eq!(media.bytes, file.plain);
    assert_eq!(media.sha256, file.enc.file_sha256);
    assert_eq!((media.width, media.height), (Some(640), Some(480)));
    assert_eq!(
        media.thumbnail.as_deref(),
        Some(&[0xff, 0xd8, 0xff, 0xd9][..])
    );
    assert_eq!(media.direct_path, file.direct_path);
    assert_eq!(media.file_name, None);

    // A resend under the same id is not a second message.
    sender
        .send(
            &mock,
            "img-1",
            &image_message(image(&file, Some("Invoice 7"))),
        )
        .await;
    assert_eq!(mock.received().len(), 1);

    // A document without a caption, wrapped as the library wraps captioned ones.
    let pdf = upload(
        &mock,
        b"%PDF-1.4 a small report".to_vec(),
        MediaType::Document,
    )
    .await;
    let document = wa::message::DocumentMessage {
        url: Some(pdf.url.clone()),
        direct_path: Some(pdf.direct_path.clone()),
        media_key: Some(pdf.enc.media_key.to_vec()),
        file_sha256: Some(pdf.enc.file_sha256.to_vec()),
        file_enc_sha256: Some(pdf.enc.file_enc_sha256.to_vec()),
        file_length: Some(pdf.plain.len() as u64),
        mimetype: Some("application/pdf".into()),
        file_name: Some("report.pdf".into()),
        ..Default::default()
    };
    let wrapped = wa::Message {
        document_with_caption_message: buffa::MessageField::some(wa::message::FutureProofMessage {
            message: buffa::MessageField::some(wa::Message {
                document_message: buffa::MessageField::some(document),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    sender.send(&mock, "doc-1", &wrapped).await;
    let received = mock.received();
    assert_eq!(received.len(), 2, "{:?}", mock.media_failures());
    assert_eq!(received[1].text, "");
    let media = received[1].media.as_ref().unwrap();
    assert_eq!(media.kind, MediaKind::Document);
    assert_eq!(media.file_name.as_deref(), Some("report.pdf"));
    assert_eq!(media.bytes, pdf.plain);
    assert_eq!((media.width, media.height), (None, None));

    let text = wa::Message {
        conversation: Some("plain words".into()),
        ..Default::default()
    };
    sender.send(&mock, "txt-1", &text).await;
    let received = mock.received();
    assert_eq!(received.len(), 3);
    assert_eq!(received[2].text, "plain words");
    assert_eq!(received[2].media, None);
    assert!(mock.media_failures().is_empty());
}

#[tokio::test]
async fn a_file_that_does_not_open_is_acked_recorded_and_not_delivered() {
    let mock = MockServer::start(PHONE).await.unwrap();
    let mut sender = Sender::new(&mock);
    let file = upload(&mock, vec![42; 4000], MediaType::Image).await;
    let pdf = upload(&mock, vec![7; 100], MediaType::Document).await;

    let mut wrong_key = image(&file, None);
    wrong_key.media_key = Some(vec![1; 32]);
    let mut nowhere = image(&file, None);
    nowhere.direct_path = Some("/v/t62.7118-24/nothing_n.enc".into());
    let mut other_hash = image(&file, None);
    other_hash.file_sha256 = Some(vec![0; 32]);
    let mut longer = image(&file, None);
    longer.file_length = Some(4001);
    let mut keyless = image(&file, None);
    keyless.media_key = None;
    // The document's file, sent as an image (with its own key).
    let mut as_image = image(&pdf, None);
    as_image.file_length = Some(100);
    let cases = [
        (wrong_key, "media_key"),
        (nowhere, "no file at /v/t62.7118-24/nothing_n.enc"),
        (other_hash, "file_sha256"),
        (longer, "file_length"),
        (keyless, "no 32-byte media_key"),
        (as_image, "uploaded as document"),
    ];
    for (n, (bad, expected)) in cases.into_iter().enumerate() {
        let id = format!("bad-{n}");
        let ack = sender.send(&mock, &id, &image_message(bad)).await;
        // WhatsApp's server never opens the file: it takes the message.
        assert_eq!(attr(&ack, "error"), None);
        let failures = mock.media_failures();
        assert_eq!(failures.len(), n + 1);
        let failure = &failures[n];
        assert_eq!(failure.message_id, id);
        assert_eq!(failure.kind, MediaKind::Image);
        assert_eq!(
            (failure.from.as_str(), failure.to.as_str()),
            (PHONE, CONTACT)
        );
        assert!(
            failure.reason.contains(expected),
            "case {n}: {:?} lacks {expected:?}",
            failure.reason
        );
    }
    assert!(mock.received().is_empty());
    assert_eq!(mock.acked().len(), 6);
}
