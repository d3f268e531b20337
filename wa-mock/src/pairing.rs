//! The phone's side of linking: reading the QR string a client shows and signing
//! the new device's identity (the ADV device identity, HMAC-keyed with the
//! client's secret from the QR code and signed with the account key), then checking
//! the device signature the client sends back, as WhatsApp's phone does.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use buffa::Message as _;
use hmac::{KeyInit, Mac};
use wacore_libsignal::protocol::{KeyPair, PublicKey};
use waproto::whatsapp::{self as wa, ADVEncryptionType};

use crate::error::{Error, Result};

const ADV_PREFIX_ACCOUNT_SIGNATURE: &[u8] = &[6, 0];
const ADV_PREFIX_DEVICE_SIGNATURE: &[u8] = &[6, 1];

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The fields of a QR code the phone needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedQr {
    pub pairing_ref: String,
    pub noise_key: [u8; 32],
    pub identity_key: [u8; 32],
    pub adv_secret: [u8; 32],
}

fn key32(b64: &str, what: &str) -> Result<[u8; 32]> {
    BASE64_STANDARD
        .decode(b64)
        .map_err(|e| Error::Phone(format!("the QR code's {what} is not base64: {e}")))?
        .try_into()
        .map_err(|_| Error::Phone(format!("the QR code's {what} is not 32 bytes")))
}

/// Reads `ref,noise,identity,adv-secret[,client-type]`.
pub fn parse_qr(code: &str) -> Result<ScannedQr> {
    let parts: Vec<&str> = code.split(',').collect();
    if parts.len() < 4 || parts[..4].iter().any(|p| p.is_empty()) {
        return Err(Error::Phone("not a WhatsApp linking QR code".into()));
    }
    Ok(ScannedQr {
        pairing_ref: parts[0].to_owned(),
        noise_key: key32(parts[1], "noise key")?,
        identity_key: key32(parts[2], "identity key")?,
        adv_secret: key32(parts[3], "secret")?,
    })
}

/// The `device-identity` content of `pair-success` for a device `key_index`.
pub fn signed_device_identity(
    account: &KeyPair,
    qr: &ScannedQr,
    key_index: u32,
    now_secs: u64,
) -> Result<Vec<u8>> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(key_index),
        timestamp: Some(now_secs),
        key_index: Some(key_index),
        account_type: Some(ADVEncryptionType::E2EE),
        device_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut to_sign = Vec::new();
    to_sign.extend_from_slice(ADV_PREFIX_ACCOUNT_SIGNATURE);
    to_sign.extend_from_slice(&details);
    to_sign.extend_from_slice(&qr.identity_key);
    let signature = account
        .private_key
        .calculate_signature(&to_sign, &mut rand10::rng())
        .map_err(|e| Error::Phone(format!("cannot sign the device identity: {e}")))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&qr.adv_secret)
        .map_err(|e| Error::Phone(format!("hmac: {e}")))?;
    mac.update(&signed);
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec())
}

/// Checks the identity the device signed back (`pair-device-sign`): the account
/// signature is still the phone's and the device signature is the device's own.
pub fn verify_device_signature(
    account: &KeyPair,
    device_identity_key: &[u8; 32],
    signed: &[u8],
) -> Result<()> {
    let identity = wa::ADVSignedDeviceIdentity::decode_from_slice(signed)
        .map_err(|e| Error::Phone(format!("pair-device-sign: {e}")))?;
    let details = identity.details.as_deref().unwrap_or_default();
    if identity.account_signature_key.as_deref() != Some(account.public_key.public_key_bytes()) {
        return Err(Error::Phone(
            "pair-device-sign carries another account key".into(),
        ));
    }
    let mut message = Vec::new();
    message.extend_from_slice(ADV_PREFIX_DEVICE_SIGNATURE);
    message.extend_from_slice(details);
    message.extend_from_slice(device_identity_key);
    message.extend_from_slice(account.public_key.public_key_bytes());
    let device_key = PublicKey::from_djb_public_key_bytes(device_identity_key)
        .map_err(|e| Error::Phone(format!("device identity key: {e}")))?;
    if device_key.verify_signature(
        &message,
        identity.device_signature.as_deref().unwrap_or_default(),
    ) {
        Ok(())
    } else {
        Err(Error::Phone("the device signature does not verify".into()))
    }
}

/// The phone's half of linking by pair code, from the moment its user typed the code
/// the device shows: what it keeps until the device's `companion_finish`.
pub struct CodeEntry {
    primary_ephemeral: KeyPair,
    companion_ephemeral: [u8; 32],
    /// The phone's ephemeral key wrapped with the code, for `primary_hello`.
    pub wrapped_primary_ephemeral: [u8; 80],
}

/// The code as the device shows it, as a user may type it (`abcd-1234`).
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The user typed `code` on the phone: unwraps the device's ephemeral key from its
/// `companion_hello` (salt, IV and AES-CTR under a PBKDF2 key of the code, as the
/// library wraps it) and wraps a fresh ephemeral key of the phone the same way. A
/// wrong code unwraps a wrong key, which the key bundle then gives away.
pub fn enter_code(wrapped_companion_ephemeral: &[u8], code: &str) -> Result<CodeEntry> {
    use wacore::pair_code::PairCodeUtils;
    let code = normalize_code(code);
    if !PairCodeUtils::validate_code(&code) {
        return Err(Error::Phone(format!(
            "{code:?} is not a pair code: 8 letters and digits as the device shows them"
        )));
    }
    let companion_ephemeral =
        PairCodeUtils::decrypt_primary_ephemeral_pub(wrapped_companion_ephemeral, &code)
            .map_err(|e| Error::Phone(format!("companion_hello: {e}")))?;
    let primary_ephemeral = KeyPair::generate(&mut rand10::rng());
    let public: [u8; 32] = primary_ephemeral
        .public_key
        .public_key_bytes()
        .try_into()
        .map_err(|_| Error::Phone("an ephemeral key is not 32 bytes".into()))?;
    Ok(CodeEntry {
        wrapped_primary_ephemeral: PairCodeUtils::encrypt_ephemeral_pub(&public, &code),
        primary_ephemeral,
        companion_ephemeral,
    })
}

/// The device's `companion_finish`: opens its key bundle (AES-GCM under an HKDF key
/// of the ephemeral agreement), checks that it names the device's identity key and
/// the phone's, and derives the ADV secret the device now holds (HKDF of both
/// agreements and the bundle's random bytes), which keys `pair-success`.
pub fn open_key_bundle(
    account: &KeyPair,
    entry: &CodeEntry,
    wrapped_bundle: &[u8],
    companion_identity: &[u8; 32],
) -> Result<[u8; 32]> {
    let refuse = |why: &str| Error::Phone(format!("companion_finish: {why}"));
    if wrapped_bundle.len() != 32 + 12 + 96 + 16 {
        return Err(refuse("the key bundle has the wrong length"));
    }
    let companion_ephemeral = PublicKey::from_djb_public_key_bytes(&entry.companion_ephemeral)
        .map_err(|_| refuse("the code was wrong (no valid ephemeral key)"))?;
    let ephemeral_shared = entry
        .primary_ephemeral
        .private_key
        .calculate_agreement(&companion_ephemeral)
        .map_err(|e| refuse(&e.to_string()))?;
    let (salt, rest) = wrapped_bundle.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(
        &ephemeral_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut key,
    )
    .map_err(|e| refuse(&e.to_string()))?;
    let iv: [u8; 12] = iv.try_into().map_err(|_| refuse("bad IV"))?;
    let mut bundle = Vec::new();
    wacore_libsignal::crypto::aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle)
        .map_err(|_| refuse("the key bundle does not open: the code was wrong"))?;
    if bundle[..32] != companion_identity[..]
        || bundle[32..64] != *account.public_key.public_key_bytes()
    {
        return Err(refuse("the key bundle names other identity keys"));
    }
    let device = PublicKey::from_djb_public_key_bytes(companion_identity)
        .map_err(|e| refuse(&e.to_string()))?;
    let identity_shared = account
        .private_key
        .calculate_agreement(&device)
        .map_err(|e| refuse(&e.to_string()))?;
    let mut combined = Vec::with_capacity(96);
    combined.extend_from_slice(&ephemeral_shared);
    combined.extend_from_slice(&identity_shared);
    combined.extend_from_slice(&bundle[64..96]);
    let mut adv_secret = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(&combined, None, b"adv_secret", &mut adv_secret)
        .map_err(|e| refuse(&e.to_string()))?;
    Ok(adv_secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore::pair::{DeviceState, PairUtils};

    #[test]
    fn the_library_accepts_the_identity_and_the_phone_accepts_its_signature() {
        let mut rng = rand10::rng();
        let state = DeviceState {
            identity_key: KeyPair::generate(&mut rng),
            noise_key: KeyPair::generate(&mut rng),
            adv_secret_key: [7; 32],
        };
        let code = PairUtils::make_qr_data(
            &state,
            "ref-1",
            wacore::companion_reg::CompanionWebClientType::default(),
        );
        let qr = parse_qr(&code).unwrap();
        assert_eq!(qr.pairing_ref, "ref-1");
        assert_eq!(qr.adv_secret, [7; 32]);
        let account = KeyPair::generate(&mut rng);
        let identity = signed_device_identity(&account, &qr, 3, 1).unwrap();
        let (signed_back, key_index) = PairUtils::do_pair_crypto(&state, &identity).unwrap();
        assert_eq!(key_index, 3);
        verify_device_signature(&account, &qr.identity_key, &signed_back).unwrap();

        let mut wrong = qr.clone();
        wrong.adv_secret = [8; 32];
        let forged = signed_device_identity(&account, &wrong, 3, 1).unwrap();
        assert!(PairUtils::do_pair_crypto(&state, &forged).is_err());
        let other = KeyPair::generate(&mut rng);
        assert!(verify_device_signature(&other, &qr.identity_key, &signed_back).is_err());
    }

    #[test]
    fn the_phone_derives_the_secret_the_library_derives_from_the_right_code_only() {
        use wacore::pair_code::PairCodeUtils;
        let mut rng = rand10::rng();
        let account = KeyPair::generate(&mut rng);
        let device_identity = KeyPair::generate(&mut rng);
        let device_ephemeral = KeyPair::generate(&mut rng);
        let code = "ABCD1234";
        let public: [u8; 32] = device_ephemeral
            .public_key
            .public_key_bytes()
            .try_into()
            .unwrap();
        let hello = PairCodeUtils::encrypt_ephemeral_pub(&public, code);

        let entry = enter_code(&hello, "abcd-1234").unwrap();
        let primary =
            PairCodeUtils::decrypt_primary_ephemeral_pub(&entry.wrapped_primary_ephemeral, code)
                .unwrap();
        let account_pub: [u8; 32] = account.public_key.public_key_bytes().try_into().unwrap();
        let (bundle, library_secret) = PairCodeUtils::prepare_key_bundle(
            &device_ephemeral,
            &primary,
            &account_pub,
            &device_identity,
        )
        .unwrap();
        let identity: [u8; 32] = device_identity
            .public_key
            .public_key_bytes()
            .try_into()
            .unwrap();
        assert_eq!(
            open_key_bundle(&account, &entry, &bundle, &identity).unwrap(),
            library_secret
        );

        // The phone's user typed another code: the bundle does not open.
        let wrong = enter_code(&hello, "ABCD1235").unwrap();
        assert!(open_key_bundle(&account, &wrong, &bundle, &identity).is_err());
        assert!(enter_code(&hello, "short").is_err());
    }
}
