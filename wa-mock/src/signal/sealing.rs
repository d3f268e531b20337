//! Test support: a contact's phone sending, as a sender's library does, so tests
//! reach the server's message handling through real Signal encryption.

use wacore_libsignal::protocol::{
    CiphertextMessage, DeviceId, GenericSignedPreKey as _, PreKeyBundle, ProtocolAddress,
    UsePQRatchet,
};
use waproto::whatsapp as wa;

use super::{Contact, SIGNED_PRE_KEY_ID};

impl Contact {
    /// This contact's keys as a sender gets them from the `encrypt` answer; hands
    /// out a one-time pre-key, as that answer does.
    pub(crate) fn pre_key_bundle(&mut self) -> PreKeyBundle {
        let id = self.next_pre_key;
        self.next_pre_key += 1;
        let pre_key = self.pre_keys.0[&id].public_key().expect("a pre-key");
        PreKeyBundle::new(
            self.identity.registration_id,
            DeviceId::from(0u32),
            Some((id.into(), pre_key)),
            SIGNED_PRE_KEY_ID.into(),
            self.signed.0.public_key().expect("a signed pre-key"),
            self.signed_signature.clone(),
            *self.identity.pair.identity_key(),
        )
        .expect("a bundle")
    }

    /// Encrypts `message` as this contact's phone would send it to `to` (whose keys
    /// are `bundle`): the `<enc>` type and payload.
    pub(crate) async fn seal(
        &mut self,
        to: &ProtocolAddress,
        bundle: &PreKeyBundle,
        message: &wa::Message,
    ) -> (&'static str, Vec<u8>) {
        let mut rng = rand10::make_rng::<rand10::rngs::StdRng>();
        if !self.sessions.0.contains_key(&to.to_string()) {
            wacore_libsignal::protocol::process_prekey_bundle(
                to,
                &mut self.sessions,
                &mut self.identity,
                bundle,
                &mut rng,
                UsePQRatchet::No,
            )
            .await
            .expect("the bundle is accepted");
        }
        let plaintext = wacore::messages::MessageUtils::encode_and_pad(message);
        let sealed = wacore_libsignal::protocol::message_encrypt(
            &plaintext,
            to,
            &mut self.sessions,
            &mut self.identity,
        )
        .await
        .expect("the message encrypts");
        let kind = match sealed {
            CiphertextMessage::PreKeySignalMessage(_) => "pkmsg",
            _ => "msg",
        };
        (kind, sealed.serialize().to_vec())
    }
}
