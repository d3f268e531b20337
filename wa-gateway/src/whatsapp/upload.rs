//! Media into a WhatsApp message: the file is encrypted into a second file beside it
//! (the library's streaming encryption), uploaded from there to WhatsApp's media
//! servers, and the message built from the upload's answer. Memory stays flat
//! whatever the file's size.

use std::io::{BufReader, BufWriter, Read, Seek as _, SeekFrom};
use std::path::PathBuf;

use abtrack_proto::media::Kind;
use whatsapp_rust::Client;
use whatsapp_rust::media::{DocumentOptions, ImageOptions, document_message, image_message};
use whatsapp_rust::wacore::download::MediaType;
use whatsapp_rust::wacore::upload::{EncryptedMediaInfo, UploadSource, encrypt_media_streaming};
use whatsapp_rust::waproto::whatsapp as wa;

use crate::error::{Error, Result};
use crate::media::Prepared;

/// The encrypted file, read from any offset as often as the upload needs.
struct FileSource {
    path: PathBuf,
    len: u64,
}

impl UploadSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn reader_from(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send>> {
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(BufReader::new(file)))
    }
}

/// Encrypts and uploads `media`, and answers the message that carries it with
/// `caption`. A failed upload is worth another try later; nothing was sent.
pub async fn media_message(
    client: &Client,
    media: &Prepared,
    caption: &str,
) -> Result<wa::Message> {
    let media_type = match media.kind {
        Kind::Image => MediaType::Image,
        Kind::Document => MediaType::Document,
    };
    let plain = media.path().to_owned();
    let dir = plain
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let (encrypted, info): (tempfile::NamedTempFile, EncryptedMediaInfo) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let encrypted = tempfile::NamedTempFile::new_in(dir)?;
            let reader = BufReader::new(std::fs::File::open(&plain)?);
            let writer = BufWriter::new(encrypted.reopen()?);
            let info = encrypt_media_streaming(reader, writer, media_type)
                .map_err(|e| Error::Internal(format!("cannot encrypt the media: {e}")))?;
            Ok((encrypted, info))
        })
        .await
        .map_err(|e| Error::Internal(format!("media encryption failed: {e}")))??;
    let source = FileSource {
        path: encrypted.path().to_owned(),
        len: encrypted.as_file().metadata()?.len(),
    };
    let upload = client
        .upload_stream(source, info, media_type)
        .await
        .map_err(|e| {
            Error::MediaUnavailable(format!(
                "the upload to WhatsApp's media servers failed: {}",
                first_line(&format!("{e:#}"))
            ))
        })?;
    // The encrypted copy is no longer needed once WhatsApp has it.
    drop(encrypted);
    let caption = Some(caption.to_owned()).filter(|c| !c.trim().is_empty());
    Ok(match media.kind {
        Kind::Image => {
            let mut message = image_message(
                upload,
                ImageOptions {
                    caption,
                    mimetype: Some(media.mime_type.clone()),
                    jpeg_thumbnail: media.thumbnail.clone(),
                    ..ImageOptions::default()
                },
            );
            if let Some(image) = message.image_message.as_option_mut() {
                image.width = media.width;
                image.height = media.height;
            }
            message
        }
        Kind::Document => document_message(
            upload,
            DocumentOptions {
                mimetype: Some(media.mime_type.clone()),
                title: media.file_name.clone(),
                file_name: media.file_name.clone(),
                caption,
                ..DocumentOptions::default()
            },
        ),
    })
}

/// The first line of an error chain, shortened: the library's upload errors can
/// carry a server's whole answer, and an address's query its upload token.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let line = match line.find('?') {
        Some(at) => format!("{} (query hidden)", &line[..at]),
        None => line.to_owned(),
    };
    line.chars().take(300).collect()
}
