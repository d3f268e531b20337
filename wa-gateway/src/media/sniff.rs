//! What a media file is, from its bytes: the type (a declared type the bytes
//! contradict is the job's error), whether WhatsApp shows it as a photo or a
//! document, the size limit of that kind, and a photo's thumbnail and dimensions.

use std::io::Read as _;
use std::path::Path;

use abtrack_proto::media::Kind;

use super::{Request, Source};
use crate::config::MediaLimits;
use crate::error::{Error, Result};

/// How much of the file the type is read from (Office files are recognised by the
/// names inside their zip, near its start).
const HEAD: usize = 256 * 1024;
/// The longest side of a thumbnail, in pixels.
const THUMBNAIL_SIDE: u32 = 96;

/// What the bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Looked {
    pub kind: Kind,
    pub mime_type: String,
    pub file_name: Option<String>,
    pub thumbnail: Option<Vec<u8>>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Examines the file at `path` (`size` bytes) that `request` asked to send.
pub fn examine(path: &Path, size: u64, request: &Request, limits: &MediaLimits) -> Result<Looked> {
    let mut head = Vec::with_capacity(HEAD.min(size as usize));
    std::fs::File::open(path)?
        .take(HEAD as u64)
        .read_to_end(&mut head)?;
    let sniffed = infer::get(&head).map(|t| normalise(t.mime_type()));
    let declared = request.mime_type.as_deref().map(normalise);
    let mime_type = decide(sniffed, declared)?;
    let kind = Kind::of_type(mime_type);
    if kind == Kind::Image && size > limits.max_image_bytes {
        return Err(Error::BadMedia(format!(
            "the image is {size} bytes, more than the {} MiB WhatsApp takes for a photo (WA_MEDIA_MAX_IMAGE_MB)",
            limits.max_image_bytes >> 20
        )));
    }
    let extension = infer::get(&head).map(|t| t.extension());
    let looked = match kind {
        Kind::Image => {
            let (thumbnail, width, height) = thumbnail(path)?;
            Looked {
                kind,
                mime_type: mime_type.to_owned(),
                file_name: None,
                thumbnail: Some(thumbnail),
                width: Some(width),
                height: Some(height),
            }
        }
        Kind::Document => Looked {
            kind,
            mime_type: mime_type.to_owned(),
            file_name: Some(file_name(request, extension)),
            thumbnail: None,
            width: None,
            height: None,
        },
    };
    Ok(looked)
}

/// Names that mean the same type.
fn normalise(mime: &str) -> &str {
    match mime {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "application/x-pdf" => "application/pdf",
        other => other,
    }
}

/// Types that are zip files inside (Office Open XML, OpenDocument, EPUB, ...).
fn zip_family(mime: &str) -> bool {
    mime == "application/zip"
        || mime.starts_with("application/vnd.openxmlformats-officedocument.")
        || mime.starts_with("application/vnd.oasis.opendocument.")
        || mime == "application/epub+zip"
}

/// Types that are OLE compound files inside (Office 97-2003).
fn ole_family(mime: &str) -> bool {
    matches!(
        mime,
        "application/x-ole-storage"
            | "application/msword"
            | "application/vnd.ms-excel"
            | "application/vnd.ms-powerpoint"
            | "application/vnd.ms-outlook"
    )
}

/// The type sent: the declared one when the bytes agree or say nothing against it,
/// else the one found in the bytes; an error when the two contradict.
fn decide<'a>(sniffed: Option<&'a str>, declared: Option<&'a str>) -> Result<&'a str> {
    match (sniffed, declared) {
        (None, None) => Ok("application/octet-stream"),
        (Some(found), None) => Ok(found),
        (None, Some(said)) if said.starts_with("image/") => Err(Error::BadMedia(format!(
            "mimeType says {said}, but the bytes are no image WhatsApp shows (JPEG, PNG or WebP)"
        ))),
        (None, Some(said)) => Ok(said),
        (Some(found), Some(said)) => {
            let agree = found == said
                || (zip_family(found) && zip_family(said))
                || (ole_family(found) && ole_family(said));
            if agree {
                // The declared name is the more precise one within a family.
                Ok(said)
            } else {
                Err(Error::BadMedia(format!(
                    "mimeType says {said}, but the bytes are {found}"
                )))
            }
        }
    }
}

/// The name a document shows: the job's, else the URL's last part, else a name
/// from the type.
fn file_name(request: &Request, extension: Option<&str>) -> String {
    if let Some(name) = &request.file_name {
        return name.clone();
    }
    let from_url = match &request.source {
        Source::Url(url) | Source::Storage { name: url, .. } => {
            abtrack_proto::media::name_from_url(url).map(str::to_owned)
        }
        Source::Data(_) => None,
    };
    from_url.unwrap_or_else(|| match extension {
        Some(ext) => format!("document.{ext}"),
        None => "document".to_owned(),
    })
}

/// A JPEG thumbnail of the photo at `path`, and the photo's width and height.
fn thumbnail(path: &Path) -> Result<(Vec<u8>, u32, u32)> {
    let bad = |e: image::ImageError| Error::BadMedia(format!("the image cannot be read: {e}"));
    let picture = image::ImageReader::open(path)?
        .with_guessed_format()?
        .decode()
        .map_err(bad)?;
    let (width, height) = (picture.width(), picture.height());
    let small = picture
        .thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
        .into_rgb8();
    let mut jpeg = Vec::new();
    small
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .map_err(bad)?;
    Ok((jpeg, width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytes_decide_and_a_contradiction_is_an_error() {
        assert_eq!(decide(Some("image/png"), None).unwrap(), "image/png");
        assert_eq!(decide(None, None).unwrap(), "application/octet-stream");
        assert_eq!(decide(None, Some("text/csv")).unwrap(), "text/csv");
        assert!(decide(None, Some("image/png")).is_err());
        assert!(decide(Some("application/pdf"), Some("image/jpeg")).is_err());
        assert!(decide(Some("image/jpeg"), Some("application/pdf")).is_err());
        let docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
        assert_eq!(decide(Some("application/zip"), Some(docx)).unwrap(), docx);
        assert_eq!(
            decide(
                Some("application/x-ole-storage"),
                Some("application/msword")
            )
            .unwrap(),
            "application/msword"
        );
        assert_eq!(
            decide(Some(normalise("image/jpg")), Some("image/jpeg")).unwrap(),
            "image/jpeg"
        );
    }

    #[test]
    fn a_document_is_named_by_the_job_then_the_url_then_its_type() {
        let request = |source, name: Option<&str>| Request {
            source,
            mime_type: None,
            file_name: name.map(str::to_owned),
        };
        let url = || Source::Url("https://h/files/Rekap%20Okt.pdf?sig=1".into());
        assert_eq!(
            file_name(&request(url(), Some("a.pdf")), Some("pdf")),
            "a.pdf"
        );
        assert_eq!(
            file_name(&request(url(), None), Some("pdf")),
            "Rekap%20Okt.pdf"
        );
        assert_eq!(
            file_name(&request(Source::Data(vec![1]), None), Some("pdf")),
            "document.pdf"
        );
        assert_eq!(
            file_name(&request(Source::Data(vec![1]), None), None),
            "document"
        );
    }
}
