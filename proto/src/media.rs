//! The rules for a job's media that every service applies the same way: where its
//! bytes may come from, how large inline bytes may be, and what a declared type or
//! file name must look like. What the bytes really are is the gateway's to find.

/// The most inline bytes a job may carry: a gRPC message stays well under its 4 MiB
/// limit, and a list of jobs stays light. Larger files go by URL or storage object.
pub const MAX_INLINE_BYTES: usize = 3 * 1024 * 1024;

/// The longest URL a job may name.
pub const MAX_URL_CHARS: usize = 4096;

/// The longest file name a document may show.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// The types WhatsApp shows as a photo; every other file goes as a document.
pub const IMAGE_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// How WhatsApp shows the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Document,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Document => "document",
        }
    }

    /// The kind a file of type `mime` is sent as.
    pub fn of_type(mime: &str) -> Self {
        if IMAGE_TYPES.contains(&mime) {
            Kind::Image
        } else {
            Kind::Document
        }
    }

    /// The kind a job's declaration suggests before the bytes are seen: its type, or
    /// else its file name's extension.
    pub fn declared(mime_type: Option<&str>, file_name: Option<&str>) -> Self {
        if let Some(mime) = mime_type {
            return Self::of_type(mime);
        }
        let extension = file_name
            .and_then(|n| n.rsplit_once('.'))
            .map(|(_, ext)| ext.to_ascii_lowercase());
        match extension.as_deref() {
            Some("jpg" | "jpeg" | "png" | "webp") => Kind::Image,
            _ => Kind::Document,
        }
    }
}

/// Where a URL's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    /// A Firebase Storage (Cloud Storage) object: `gs://bucket/path`.
    Storage,
}

/// Checks a media URL's shape; answers its scheme.
pub fn check_url(url: &str) -> Result<Scheme, String> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(format!("is longer than {MAX_URL_CHARS} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    let lower = url.to_ascii_lowercase();
    let (scheme, rest) = if let Some(rest) = lower.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = lower.strip_prefix("gs://") {
        (Scheme::Storage, rest)
    } else {
        return Err("must start with https://, http:// or gs://".into());
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err("names no host".into());
    }
    if scheme == Scheme::Storage {
        storage_object(url).ok_or("must name a bucket and an object: gs://bucket/path")?;
    }
    Ok(scheme)
}

/// The bucket and object path of `gs://bucket/path`.
pub fn storage_object(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .get(5..)
        .filter(|_| url[..5].eq_ignore_ascii_case("gs://"))?;
    let (bucket, object) = rest.split_once('/')?;
    (!bucket.is_empty() && !object.is_empty()).then_some((bucket, object))
}

/// The URL as it may be shown: without its query string or fragment, which may carry
/// a signature or a token.
pub fn shown_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// The file name at the end of a URL's path (`…/Rekap.pdf?sig=…` gives `Rekap.pdf`),
/// when it has an extension and is a valid file name.
pub fn name_from_url(url: &str) -> Option<&str> {
    shown_url(url)
        .rsplit('/')
        .next()
        .filter(|last| last.contains('.') && check_file_name(last).is_ok())
}

/// Checks a declared type: `type/subtype`, as in a Content-Type header.
pub fn check_mime_type(mime: &str) -> Result<(), String> {
    let (kind, subtype) = mime.split_once('/').ok_or("must look like type/subtype")?;
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    if !token(kind) || !token(subtype) {
        return Err("must look like type/subtype (letters, digits, . + - _)".into());
    }
    Ok(())
}

/// Checks a file name: no folders, no control characters, within the limit.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if name.chars().count() > MAX_FILE_NAME_CHARS {
        return Err(format!("is longer than {MAX_FILE_NAME_CHARS} characters"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err("must not contain '/', '\\' or control characters".into());
    }
    Ok(())
}

/// What a job declares about its media, checked: a blank type or name is absent, the
/// type is lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

/// Checks a job's declared type and file name; an error names its field
/// (`media.mimeType` or `media.fileName`).
pub fn check_declared(
    mime_type: Option<&str>,
    file_name: Option<&str>,
) -> Result<Declared, (&'static str, String)> {
    let mime_type = mime_type.map(str::trim).filter(|m| !m.is_empty());
    if let Some(mime) = mime_type {
        check_mime_type(mime).map_err(|e| ("media.mimeType", e))?;
    }
    let file_name = file_name.map(str::trim).filter(|n| !n.is_empty());
    if let Some(name) = file_name {
        check_file_name(name).map_err(|e| ("media.fileName", e))?;
    }
    Ok(Declared {
        mime_type: mime_type.map(str::to_ascii_lowercase),
        file_name: file_name.map(str::to_owned),
    })
}

/// Checks the size of inline bytes.
pub fn check_inline(len: usize) -> Result<(), String> {
    if len == 0 {
        return Err("is empty".into());
    }
    if len > MAX_INLINE_BYTES {
        return Err(format!(
            "is {len} bytes; inline media is limited to {MAX_INLINE_BYTES} bytes (send larger files by URL)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_scheme_a_host_and_for_storage_an_object() {
        assert_eq!(check_url("https://example.org/a.pdf"), Ok(Scheme::Https));
        assert_eq!(check_url("HTTP://10.0.0.1/a"), Ok(Scheme::Http));
        assert_eq!(check_url("gs://bucket/dir/a.pdf"), Ok(Scheme::Storage));
        assert!(check_url("gs://bucket/").is_err());
        assert!(check_url("gs://bucket").is_err());
        assert!(check_url("ftp://example.org/a").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("https:///path").is_err());
        assert!(check_url("https://example.org/a b").is_err());
        assert_eq!(storage_object("gs://b/x/y.png"), Some(("b", "x/y.png")));
    }

    #[test]
    fn a_url_names_its_file_when_it_ends_in_one() {
        assert_eq!(
            name_from_url("https://h/r/Rekap.pdf?sig=1"),
            Some("Rekap.pdf")
        );
        assert_eq!(
            name_from_url("gs://b/foto/kegiatan.jpg"),
            Some("kegiatan.jpg")
        );
        assert_eq!(name_from_url("https://h/download"), None);
        assert_eq!(name_from_url("https://h/"), None);
    }

    #[test]
    fn shown_urls_lose_their_signature() {
        assert_eq!(
            shown_url("https://h/a.pdf?X-Goog-Signature=abc#frag"),
            "https://h/a.pdf"
        );
    }

    #[test]
    fn declared_kinds_follow_the_type_then_the_extension() {
        assert_eq!(Kind::declared(Some("image/png"), None), Kind::Image);
        assert_eq!(Kind::declared(Some("image/gif"), None), Kind::Document);
        assert_eq!(Kind::declared(None, Some("Photo.JPG")), Kind::Image);
        assert_eq!(Kind::declared(None, Some("recap.pdf")), Kind::Document);
        assert_eq!(Kind::declared(None, None), Kind::Document);
    }

    #[test]
    fn types_file_names_and_inline_sizes_are_checked() {
        assert!(check_mime_type("application/vnd.ms-excel").is_ok());
        assert!(check_mime_type("pdf").is_err());
        assert!(check_mime_type("image/png; charset=x").is_err());
        assert!(check_file_name("Rekap Oktober.pdf").is_ok());
        assert!(check_file_name("../x.pdf").is_err());
        assert!(check_file_name(" ").is_err());
        assert!(check_inline(0).is_err());
        assert!(check_inline(MAX_INLINE_BYTES).is_ok());
        assert!(check_inline(MAX_INLINE_BYTES + 1).is_err());
    }
}
