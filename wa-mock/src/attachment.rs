//! What a recipient's phone makes of a decrypted message: its text, or for an image
//! or a document, the file the message names on the media host, checked and opened
//! with the message's key as WhatsApp's apps do (the library's own media
//! decryption), so a test sees the very bytes a recipient would.

use sha2::{Digest as _, Sha256};
use wacore::download::{DownloadUtils, Downloadable, MediaType};
use wacore::proto_helpers::MessageExt as _;
use waproto::whatsapp as wa;

use crate::media::Store;
use crate::server::{Received, Shared, now_ms};

/// The kinds of media message the mock's recipients open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Document,
}

impl MediaKind {
    /// The name WhatsApp's upload paths use: `image`, `document`.
    pub fn as_str(self) -> &'static str {
        self.media_type().mms_type()
    }

    /// The library's media type, whose key-derivation string the file was
    /// encrypted under.
    pub fn media_type(self) -> MediaType {
        match self {
            MediaKind::Image => MediaType::Image,
            MediaKind::Document => MediaType::Document,
        }
    }
}

/// The file of a media message, as its recipient opened it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMedia {
    pub kind: MediaKind,
    pub mime_type: String,
    /// The document's file name (images carry none).
    pub file_name: Option<String>,
    /// The decrypted file.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, as the message announced and the mock checked.
    pub sha256: [u8; 32],
    /// The image's size as the message gives it (documents carry none).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The message's inline JPEG preview.
    pub thumbnail: Option<Vec<u8>>,
    /// Where the media host keeps the encrypted file.
    pub direct_path: String,
}

impl ReceivedMedia {
    /// `sha256` in lowercase hex, as the control API shows it.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Written by hand so a failed assertion prints the file's size and hash, not
/// megabytes of it.
impl std::fmt::Debug for ReceivedMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedMedia")
            .field("kind", &self.kind)
            .field("mime_type", &self.mime_type)
            .field("file_name", &self.file_name)
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256_hex())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("thumbnail_len", &self.thumbnail.as_ref().map(Vec::len))
            .field("direct_path", &self.direct_path)
            .finish()
    }
}

/// A media message its recipient could not open: the server took it (WhatsApp's
/// server never looks inside), but the recipient got nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFailure {
    /// The number (digits) of the account that sent it.
    pub from: String,
    /// The contact's number (digits).
    pub to: String,
    pub message_id: String,
    pub kind: MediaKind,
    /// Why it did not open: a missing field, a file the host does not have, a
    /// hash, MAC or length that does not match.
    pub reason: String,
    /// When the mock gave up on it (ms since the epoch).
    pub at_ms: i64,
}

/// Why a decrypted message gave its recipient nothing.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// Neither text nor a media kind the mock opens.
    NoContent,
    /// A media message whose file did not open.
    Media(MediaKind, String),
}

/// A media message's fields, whichever kind it is.
struct Named<'a> {
    kind: MediaKind,
    file: &'a dyn Downloadable,
    mime_type: Option<&'a str>,
    caption: Option<&'a str>,
    file_name: Option<&'a str>,
    width: Option<u32>,
    height: Option<u32>,
    thumbnail: Option<&'a [u8]>,
}

/// The image or document a message carries, under any wrapper the library puts
/// around one (ephemeral, view once, document with caption).
fn named(message: &wa::Message) -> Option<Named<'_>> {
    let base = message.get_base_message();
    if let Some(image) = base.image_message.as_option() {
        return Some(Named {
            kind: MediaKind::Image,
            file: image,
            mime_type: image.mimetype.as_deref(),
            caption: image.caption.as_deref(),
            file_name: None,
            width: image.width,
            height: image.height,
            thumbnail: image.jpeg_thumbnail.as_deref(),
        });
    }
    let document = base.document_message.as_option()?;
    Some(Named {
        kind: MediaKind::Document,
        file: document,
        mime_type: document.mimetype.as_deref(),
        caption: document.caption.as_deref(),
        file_name: document.file_name.as_deref(),
        width: None,
        height: None,
        thumbnail: document.jpeg_thumbnail.as_deref(),
    })
}

/// What `message` gives its recipient: the text (for a media message its caption,
/// empty when none) and the opened file.
pub(crate) async fn read(
    store: &Store,
    message: &wa::Message,
) -> Result<(String, Option<ReceivedMedia>), Unreadable> {
    let text = message.conversation.clone().or_else(|| {
        message
            .extended_text_message
            .as_option()
            .and_then(|m| m.text.clone())
    });
    if let Some(text) = text {
        return Ok((text, None));
    }
    let named = named(message).ok_or(Unreadable::NoContent)?;
    let kind = named.kind;
    let caption = named.caption.unwrap_or_default().to_owned();
    let media = open(store, named)
        .await
        .map_err(|reason| Unreadable::Media(kind, reason))?;
    Ok((caption, Some(media)))
}

/// A 32-byte field of the message, or why not.
fn field32(value: Option<&[u8]>, name: &str) -> Result<[u8; 32], String> {
    value
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| format!("the message has no 32-byte {name}"))
}

/// Finds the file the message names, checks it is the one the message describes,
/// and decrypts it (off the runtime: a file may be 100 MB).
async fn open(store: &Store, named: Named<'_>) -> Result<ReceivedMedia, String> {
    let file = named.file;
    let media_key = field32(file.media_key(), "media_key")?;
    let enc_sha256 = field32(file.file_enc_sha256(), "file_enc_sha256")?;
    let sha256 = field32(file.file_sha256(), "file_sha256")?;
    let length = file.file_length().ok_or("the message has no file_length")?;
    let mime_type = named
        .mime_type
        .filter(|m| !m.is_empty())
        .ok_or("the message has no mimetype")?;
    let blob =
        store
            .blob(file.direct_path(), &enc_sha256)
            .ok_or_else(|| {
                match file.direct_path() {
            Some(path) => format!("the media host has no file at {path}"),
            None => {
                "the message has no direct_path, and the media host no file of its file_enc_sha256"
                    .to_owned()
            }
        }
            })?;
    if blob.enc_sha256 != enc_sha256 {
        return Err("file_enc_sha256 differs from the hash of the file at direct_path".into());
    }
    if blob.media != named.kind.as_str() {
        return Err(format!(
            "the file was uploaded as {}, the message is {}",
            blob.media,
            named.kind.as_str()
        ));
    }
    let media_type = named.kind.media_type();
    let encrypted = blob.bytes.clone();
    let (bytes, digest) = tokio::task::spawn_blocking(move || {
        DownloadUtils::verify_and_decrypt(&encrypted, &media_key, media_type).map(|plain| {
            let digest: [u8; 32] = Sha256::digest(&plain).into();
            (plain, digest)
        })
    })
    .await
    .map_err(|e| format!("the decryption task failed: {e}"))?
    .map_err(|e| format!("the file does not open with the message's media_key: {e}"))?;
    if digest != sha256 {
        return Err("file_sha256 differs from the hash of the decrypted file".into());
    }
    if bytes.len() as u64 != length {
        return Err(format!(
            "file_length says {length} bytes, the decrypted file has {}",
            bytes.len()
        ));
    }
    Ok(ReceivedMedia {
        kind: named.kind,
        mime_type: mime_type.to_owned(),
        file_name: named.file_name.map(str::to_owned),
        bytes,
        sha256,
        width: named.width,
        height: named.height,
        thumbnail: named.thumbnail.map(<[u8]>::to_vec),
        direct_path: blob.direct_path,
    })
}

/// Contact `to` takes `message` from `phone`'s account, once per message id: its
/// text, or the media file it names once that opens; a file that does not open is
/// recorded as a [`MediaFailure`] and the contact gets nothing. Answers whether the
/// contact got something new.
pub(crate) async fn receive(
    shared: &Shared,
    phone: usize,
    to: String,
    message_id: &str,
    message: &wa::Message,
) -> bool {
    let from = {
        let state = shared.lock();
        let from = state.phones[phone].number.clone();
        let seen = state
            .received
            .iter()
            .any(|r| r.from == from && r.to == to && r.message_id == message_id);
        if seen {
            return false;
        }
        from
    };
    match read(&shared.media, message).await {
        Ok((text, media)) => {
            shared.lock().received.push(Received {
                from,
                to,
                message_id: message_id.to_owned(),
                text,
                media,
                at_ms: now_ms(),
            });
            true
        }
        Err(Unreadable::NoContent) => {
            tracing::warn!("the mock cannot read a message: it carries no text, image or document");
            false
        }
        Err(Unreadable::Media(kind, reason)) => {
            tracing::warn!(%reason, kind = kind.as_str(), "a mock recipient cannot open a media message");
            shared.media.record_failure(MediaFailure {
                from,
                to,
                message_id: message_id.to_owned(),
                kind,
                reason,
                at_ms: now_ms(),
            });
            false
        }
    }
}

#[cfg(test)]
mod tests;
