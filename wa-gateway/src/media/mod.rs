//! A job's image or document, from where the job says it is to a file on disk whose
//! kind, type and size are known from its bytes: fetched within the operator's
//! limits ([`fetch`]), then looked at ([`sniff`]). The messenger encrypts and uploads
//! the file; nothing here holds the whole file in memory.

pub mod fetch;
pub mod sniff;

use std::path::{Path, PathBuf};

use abtrack_proto::media::Kind;
use tempfile::NamedTempFile;

use crate::config::MediaLimits;
use crate::error::{Error, Result};

/// Where a job's media comes from, as the dispatcher hands it over.
#[derive(Debug, Clone)]
pub enum Source {
    /// A URL the job named (https://, or http:// when allowed).
    Url(String),
    Data(Vec<u8>),
    /// A storage object: the URL and token come from the dispatcher, so no address
    /// rule applies; `name` is the `gs://` name for messages.
    Storage {
        name: String,
        url: String,
        bearer_token: String,
    },
}

/// What a job asks to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub source: Source,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

impl Request {
    /// A short name of the source for identities and logs: the URL without its query,
    /// or the inline bytes' digest.
    pub fn identity(&self) -> String {
        match &self.source {
            Source::Url(url) => abtrack_proto::media::shown_url(url).to_owned(),
            Source::Storage { name, .. } => name.clone(),
            Source::Data(data) => {
                use sha2::{Digest as _, Sha256};
                let digest = Sha256::digest(data);
                digest[..8].iter().map(|b| format!("{b:02x}")).collect()
            }
        }
    }
}

/// Media ready to be encrypted and uploaded: the plaintext on disk and what it is.
#[derive(Debug)]
pub struct Prepared {
    pub kind: Kind,
    pub mime_type: String,
    /// Shown with a document; `None` for an image.
    pub file_name: Option<String>,
    pub size: u64,
    /// A small JPEG preview of a photo, as WhatsApp clients show before the download.
    pub thumbnail: Option<Vec<u8>>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Removed when dropped.
    file: NamedTempFile,
}

impl Prepared {
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Fetches and examines a job's media, with the limits the operator set.
#[derive(Debug, Clone)]
pub struct Preparer {
    limits: MediaLimits,
    fetcher: fetch::Fetcher,
    /// Where files wait while they are sent.
    dir: PathBuf,
}

impl Preparer {
    pub fn new(limits: MediaLimits, dir: PathBuf) -> Result<Self> {
        clear_leftovers(&dir);
        Ok(Self {
            fetcher: fetch::Fetcher::new(&limits)?,
            limits,
            dir,
        })
    }

    /// The file of `request`, checked: within its kind's size limit, a declared type
    /// that the bytes do not contradict, a thumbnail for a photo.
    pub async fn prepare(&self, request: &Request) -> Result<Prepared> {
        std::fs::create_dir_all(&self.dir)?;
        let file = NamedTempFile::new_in(&self.dir)?;
        let size = match &request.source {
            Source::Data(data) => {
                tokio::fs::write(file.path(), data).await?;
                data.len() as u64
            }
            Source::Url(url) => self.fetcher.download(url, None, file.path()).await?,
            Source::Storage {
                name,
                url,
                bearer_token,
            } => {
                self.fetcher
                    .download_object(name, url, bearer_token, file.path())
                    .await?
            }
        };
        if size == 0 {
            return Err(Error::BadMedia("the media is empty (0 bytes)".into()));
        }
        let limits = self.limits.clone();
        let request = request.clone();
        let path = file.path().to_owned();
        let looked =
            tokio::task::spawn_blocking(move || sniff::examine(&path, size, &request, &limits))
                .await
                .map_err(|e| Error::Internal(format!("media check failed: {e}")))??;
        Ok(Prepared {
            kind: looked.kind,
            mime_type: looked.mime_type,
            file_name: looked.file_name,
            size,
            thumbnail: looked.thumbnail,
            width: looked.width,
            height: looked.height,
            file,
        })
    }
}

/// Removes the files a stopped gateway left in its staging folder: they belonged to
/// sends that ended with the process (a retry fetches its file again).
fn clear_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file()
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove a leftover media file");
        }
    }
}
