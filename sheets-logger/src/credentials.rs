//! The Google service account key (`sheets-credentials.json`), read and checked at
//! start so a malformed file is reported in one clear line, not at the first upload.

use std::path::Path;

use google_sheets4::yup_oauth2::ServiceAccountKey;

/// Reads and checks a service account key file.
pub fn read_key(path: &Path) -> Result<ServiceAccountKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a Google service account key (download it from the Google Cloud console: IAM, Service accounts, Keys): {e}",
            path.display()
        )
    })?;
    if key
        .key_type
        .as_deref()
        .is_some_and(|t| t != "service_account")
    {
        return Err(format!(
            "{} holds a {:?} credential; Sheets logging needs a service_account key",
            path.display(),
            key.key_type.as_deref().unwrap_or_default()
        ));
    }
    if !key.client_email.contains('@') {
        return Err(format!(
            "{}: client_email {:?} is not an e-mail address",
            path.display(),
            key.client_email
        ));
    }
    if !key.private_key.contains("PRIVATE KEY") {
        return Err(format!(
            "{}: private_key is not a PEM private key",
            path.display()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let path = dir.join("key.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn malformed_keys_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_key(&write(dir.path(), "{")).unwrap_err();
        assert!(err.contains("is not a Google service account key"), "{err}");
        let err = read_key(&write(
            dir.path(),
            r#"{"type":"authorized_user","private_key":"-----BEGIN PRIVATE KEY-----","client_email":"a@b","token_uri":"x"}"#,
        ))
        .unwrap_err();
        assert!(err.contains("needs a service_account key"), "{err}");
        let err = read_key(&write(
            dir.path(),
            r#"{"type":"service_account","private_key":"nope","client_email":"a@b","token_uri":"x"}"#,
        ))
        .unwrap_err();
        assert!(err.contains("private_key"), "{err}");
        let ok = read_key(&write(
            dir.path(),
            r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\n","client_email":"log@p.iam.gserviceaccount.com","token_uri":"https://oauth2.googleapis.com/token"}"#,
        ))
        .unwrap();
        assert_eq!(ok.client_email, "log@p.iam.gserviceaccount.com");
        assert!(
            read_key(&dir.path().join("missing.json"))
                .unwrap_err()
                .starts_with("cannot read")
        );
    }
}
