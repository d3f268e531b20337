//! Firebase Storage objects (`gs://bucket/path`) named by jobs: the dispatcher turns
//! each into the Cloud Storage download URL and a bearer token of the service
//! account that reads the queue, so the gateway streams the object without holding
//! any credential. `STORAGE_EMULATOR_HOST` points it at an emulator, as in Google's
//! own SDKs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use abtrack_proto::gateway::v1::StorageObject;
use firestore::gcloud_sdk::google_cloud_auth::credentials::{
    AccessTokenCredentials, service_account,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Read-only access to the objects of any bucket the service account can read.
const READ_ONLY_SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
const STORAGE_API: &str = "https://storage.googleapis.com";

/// Why a storage object cannot be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The job's fault: the name is no `gs://bucket/path`.
    #[error("media.url {0:?} is not gs://bucket/path")]
    NotAnObject(String),
    /// Google's token service did not answer: worth a retry.
    #[error("cannot get a token to read Cloud Storage: {0}")]
    NoToken(String),
}

/// How the dispatcher reaches Cloud Storage, if at all.
#[derive(Clone)]
pub struct Storage {
    /// `https://storage.googleapis.com`, or the emulator's `http://host:port`.
    base: String,
    /// `None` with an emulator: no token is sent.
    key: Option<Arc<Key>>,
}

/// The service-account key, read the first time an object is asked for: a key the
/// queue can use but storage cannot fails only the jobs that name an object.
struct Key {
    path: PathBuf,
    credentials: OnceLock<Result<AccessTokenCredentials, String>>,
}

impl Key {
    fn credentials(&self) -> Result<&AccessTokenCredentials, String> {
        self.credentials
            .get_or_init(|| read_key(&self.path))
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn read_key(key: &Path) -> Result<AccessTokenCredentials, String> {
    let text =
        std::fs::read_to_string(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", key.display()))?;
    service_account::Builder::new(json)
        .with_access_specifier(service_account::AccessSpecifier::from_scopes([
            READ_ONLY_SCOPE,
        ]))
        .build_access_token_credentials()
        .map_err(|e| format!("{} is no service-account key: {e}", key.display()))
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("base", &self.base)
            .field(
                "key",
                &self.key.as_ref().map(|k| k.path.display().to_string()),
            )
            .finish()
    }
}

impl Storage {
    /// The emulator at `host` (`host:port` or a URL), with no token.
    pub fn emulator(host: &str) -> Self {
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{host}")
        };
        Self { base, key: None }
    }

    /// Cloud Storage itself, read with the service-account key at `key`.
    pub fn with_key(key: &Path) -> Self {
        Self {
            base: STORAGE_API.to_owned(),
            key: Some(Arc::new(Key {
                path: key.to_owned(),
                credentials: OnceLock::new(),
            })),
        }
    }

    /// Where the gateway reads the object `gs_url` names, and with which token.
    pub async fn object(&self, gs_url: &str) -> Result<StorageObject, StorageError> {
        let (bucket, object) = abtrack_proto::media::storage_object(gs_url)
            .ok_or_else(|| StorageError::NotAnObject(gs_url.to_owned()))?;
        let url = format!(
            "{}/download/storage/v1/b/{}/o/{}?alt=media",
            self.base,
            utf8_percent_encode(bucket, NON_ALPHANUMERIC),
            utf8_percent_encode(object, NON_ALPHANUMERIC),
        );
        let bearer_token = match &self.key {
            None => String::new(),
            Some(key) => {
                key.credentials()
                    .map_err(StorageError::NoToken)?
                    .access_token()
                    .await
                    .map_err(|e| StorageError::NoToken(e.to_string()))?
                    .token
            }
        };
        Ok(StorageObject {
            name: gs_url.to_owned(),
            url,
            bearer_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_is_read_from_the_download_endpoint_with_its_path_encoded() {
        let storage = Storage::emulator("127.0.0.1:9199");
        let object = storage
            .object("gs://demo.appspot.com/rekap/Oktober 2026.pdf")
            .await
            .unwrap();
        assert_eq!(
            object.url,
            "http://127.0.0.1:9199/download/storage/v1/b/demo%2Eappspot%2Ecom/o/rekap%2FOktober%202026%2Epdf?alt=media"
        );
        assert!(object.bearer_token.is_empty());
        assert_eq!(
            storage.object("gs://bucket").await.unwrap_err(),
            StorageError::NotAnObject("gs://bucket".into())
        );
    }

    #[tokio::test]
    async fn a_key_storage_cannot_use_fails_only_the_objects_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("credentials.json");
        std::fs::write(&key, r#"{"project_id": "sekolah-1"}"#).unwrap();
        let storage = Storage::with_key(&key);
        match storage.object("gs://b/rekap.pdf").await {
            Err(StorageError::NoToken(why)) => {
                assert!(why.contains("is no service-account key"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
