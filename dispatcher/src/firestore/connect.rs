//! Opens the Firestore client: a service-account key (`credentials.json` or
//! `GOOGLE_APPLICATION_CREDENTIALS`) signed with rustls on ring, or, when
//! `FIRESTORE_EMULATOR_HOST` is set, plain HTTP/2 to the emulator with the stub
//! token the Firebase tools send (it also lets the request past security rules).

use std::time::Duration;

use abtrack_proto::retry::Backoff;
use backon::Retryable;
use firestore::gcloud_sdk::HeaderMap;
use firestore::gcloud_sdk::google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag,
};
use firestore::gcloud_sdk::google_cloud_auth::errors::CredentialsError;
use firestore::{FirestoreDb, FirestoreDbOptions};
use http::{Extensions, HeaderValue, header::AUTHORIZATION};

use crate::config::FirestoreSettings;
use crate::error::{Error, Result};

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct EmulatorToken {
    tag: EntityTag,
}

impl CredentialsProvider for EmulatorToken {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> std::result::Result<CacheableResource<HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer owner"));
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Connects once; the caller retries.
pub async fn connect(settings: &FirestoreSettings) -> Result<FirestoreDb> {
    let mut options = FirestoreDbOptions::new(settings.project_id.clone())
        .with_database_id(settings.database_id.clone())
        .with_request_timeout(Duration::from_secs(10));
    let db = match (&settings.emulator_host, &settings.credentials) {
        (Some(host), _) => {
            options.firebase_api_url = Some(format!("http://{host}"));
            let token = Credentials::from(EmulatorToken {
                tag: EntityTag::new(),
            });
            FirestoreDb::with_options_auth(options, token).await
        }
        (None, Some(path)) => {
            // One process-wide rustls provider: ring (no cmake or NASM anywhere).
            let _ = rustls::crypto::ring::default_provider().install_default();
            FirestoreDb::with_options_service_account_key_file(options, path.clone()).await
        }
        (None, None) => {
            return Err(Error::Firestore(
                "no Firestore credentials: set GOOGLE_APPLICATION_CREDENTIALS or FIRESTORE_EMULATOR_HOST".into(),
            ));
        }
    };
    db.map_err(|e| Error::Firestore(format!("cannot connect to Firestore: {e}")))
}

/// Connects, retrying with a growing, jittered pause until it succeeds.
pub async fn connect_with_retry(settings: &FirestoreSettings) -> FirestoreDb {
    let pauses = Backoff::new(RETRY_MIN, RETRY_MAX).delays();
    let connected = (|| connect(settings))
        .retry(pauses)
        .notify(|e, pause| {
            tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "Firestore not reachable yet");
        })
        .await;
    // The pauses never run out, so the last error is never handed back.
    connected.expect("connect retries until it succeeds")
}
