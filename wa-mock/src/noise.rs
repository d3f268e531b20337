//! The server side of the WhatsApp Noise handshake: XX for a first connection, IK
//! for a client that cached this server's static key, XXfallback when an IK hello
//! names a key this server does not hold. The certificate chain is self-made, so the
//! client accepts it only when built with `danger-skip-cert-chain-verify`.

use buffa::Message as _;
use wacore_binary::consts::{
    NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK, WA_CONN_HEADER,
};
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::{NoiseCipher, NoiseHandshake};
use waproto::whatsapp::{self as wa, cert_chain::noise_certificate};

use crate::error::{Error, Result};

/// The server's long-lived Noise key and the certificate chain that names it.
pub struct ServerIdentity {
    static_kp: KeyPair,
    cert_chain: Vec<u8>,
}

/// The transport keys of one connection, from the server's side.
pub struct Ciphers {
    pub read: NoiseCipher,
    pub write: NoiseCipher,
}

/// What the client proved about itself in the handshake.
pub struct ClientHello {
    /// The client's static Noise key (its "noise key" in the QR code).
    pub client_static: [u8; 32],
    /// The encoded `ClientPayload`.
    pub payload: Vec<u8>,
}

/// The answer to the client's first message.
pub enum Reply {
    /// An XX (or XXfallback) server hello; the client's finish message follows.
    Continue {
        server_hello: Vec<u8>,
        pending: PendingXx,
    },
    /// IK accepted: the handshake is complete once `server_hello` is sent.
    Done {
        server_hello: Vec<u8>,
        ciphers: Ciphers,
        hello: ClientHello,
    },
}

/// An XX handshake waiting for the client's finish message.
pub struct PendingXx {
    noise: NoiseHandshake,
    server_eph: KeyPair,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("noise: {e}"))
}

fn key32(bytes: &[u8], what: &str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::Protocol(format!("{what} is {} bytes, not 32", bytes.len())))
}

impl ServerIdentity {
    /// A fresh server key with a chain signed by a self-made root.
    pub fn generate() -> Self {
        let mut rng = rand10::rng();
        let static_kp = KeyPair::generate(&mut rng);
        let root = KeyPair::generate(&mut rng);
        let intermediate = KeyPair::generate(&mut rng);
        let not_before = now_secs().saturating_sub(86_400);
        let not_after = now_secs() + 10 * 365 * 86_400;
        let intermediate_details = noise_certificate::Details {
            serial: Some(1),
            issuer_serial: Some(0),
            key: Some(intermediate.public_key.public_key_bytes().to_vec()),
            not_before: Some(not_before),
            not_after: Some(not_after),
        }
        .encode_to_vec();
        let leaf_details = noise_certificate::Details {
            serial: Some(2),
            issuer_serial: Some(1),
            key: Some(static_kp.public_key.public_key_bytes().to_vec()),
            not_before: Some(not_before),
            not_after: Some(not_after),
        }
        .encode_to_vec();
        let sign = |kp: &KeyPair, details: &[u8]| {
            kp.private_key
                .calculate_signature(details, &mut rand10::rng())
                .map(|s| s.to_vec())
                .unwrap_or_default()
        };
        let cert_chain = wa::CertChain {
            leaf: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                signature: Some(sign(&intermediate, &leaf_details)),
                details: Some(leaf_details),
            }),
            intermediate: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
                signature: Some(sign(&root, &intermediate_details)),
                details: Some(intermediate_details),
            }),
        }
        .encode_to_vec();
        Self {
            static_kp,
            cert_chain,
        }
    }

    fn static_pub(&self) -> [u8; 32] {
        key32(self.static_kp.public_key.public_key_bytes(), "server key").unwrap_or([0; 32])
    }

    /// Answers the client's first handshake message (without its framing).
    pub fn respond(&self, client_hello: &[u8]) -> Result<Reply> {
        let message = wa::HandshakeMessage::decode_from_slice(client_hello)
            .map_err(|e| Error::Protocol(format!("client hello: {e}")))?;
        let hello = message
            .client_hello
            .into_option()
            .ok_or_else(|| Error::Protocol("no client hello".into()))?;
        let ephemeral = key32(
            hello.ephemeral.as_deref().unwrap_or_default(),
            "client ephemeral",
        )?;
        match (hello.r#static, hello.payload) {
            (Some(encrypted_static), Some(encrypted_payload)) => {
                match self.ik_accept(&ephemeral, &encrypted_static, &encrypted_payload) {
                    Ok(reply) => Ok(reply),
                    // The client cached another server's key: make it fall back.
                    Err(_) => self.xx_hello(NOISE_PATTERN_XXFALLBACK, &ephemeral),
                }
            }
            _ => self.xx_hello(NOISE_PATTERN_XX, &ephemeral),
        }
    }

    fn xx_hello(&self, pattern: &str, client_eph: &[u8; 32]) -> Result<Reply> {
        let mut noise = NoiseHandshake::new(pattern, &WA_CONN_HEADER).map_err(crypto)?;
        noise.authenticate(client_eph);
        let server_eph = KeyPair::generate(&mut rand10::rng());
        let server_eph_pub = server_eph.public_key.public_key_bytes().to_vec();
        noise.authenticate(&server_eph_pub);
        noise
            .mix_shared_secret(server_eph.private_key.serialize(), client_eph)
            .map_err(crypto)?;
        let encrypted_static = noise.encrypt(&self.static_pub()).map_err(crypto)?;
        noise
            .mix_shared_secret(self.static_kp.private_key.serialize(), client_eph)
            .map_err(crypto)?;
        let encrypted_cert = noise.encrypt(&self.cert_chain).map_err(crypto)?;
        let server_hello = server_hello(server_eph_pub, Some(encrypted_static), encrypted_cert);
        Ok(Reply::Continue {
            server_hello,
            pending: PendingXx { noise, server_eph },
        })
    }

    fn ik_accept(
        &self,
        client_eph: &[u8; 32],
        encrypted_static: &[u8],
        encrypted_payload: &[u8],
    ) -> Result<Reply> {
        let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER).map_err(crypto)?;
        noise.authenticate(&self.static_pub());
        noise.authenticate(client_eph);
        noise
            .mix_shared_secret(self.static_kp.private_key.serialize(), client_eph)
            .map_err(crypto)?;
        let client_static = key32(
            &noise.decrypt(encrypted_static).map_err(crypto)?,
            "client static",
        )?;
        noise
            .mix_shared_secret(self.static_kp.private_key.serialize(), &client_static)
            .map_err(crypto)?;
        let payload = noise.decrypt(encrypted_payload).map_err(crypto)?;
        let server_eph = KeyPair::generate(&mut rand10::rng());
        let server_eph_pub = server_eph.public_key.public_key_bytes().to_vec();
        noise.authenticate(&server_eph_pub);
        noise
            .mix_shared_secret(server_eph.private_key.serialize(), client_eph)
            .map_err(crypto)?;
        noise
            .mix_shared_secret(server_eph.private_key.serialize(), &client_static)
            .map_err(crypto)?;
        let encrypted_cert = noise.encrypt(&self.cert_chain).map_err(crypto)?;
        let (first, second) = noise.finish().map_err(crypto)?;
        Ok(Reply::Done {
            server_hello: server_hello(server_eph_pub, None, encrypted_cert),
            ciphers: Ciphers {
                read: first,
                write: second,
            },
            hello: ClientHello {
                client_static,
                payload,
            },
        })
    }
}

impl PendingXx {
    /// Reads the client's finish message and derives the transport keys.
    pub fn finish(mut self, client_finish: &[u8]) -> Result<(Ciphers, ClientHello)> {
        let message = wa::HandshakeMessage::decode_from_slice(client_finish)
            .map_err(|e| Error::Protocol(format!("client finish: {e}")))?;
        let finish = message
            .client_finish
            .into_option()
            .ok_or_else(|| Error::Protocol("no client finish".into()))?;
        let client_static = key32(
            &self
                .noise
                .decrypt(finish.r#static.as_deref().unwrap_or_default())
                .map_err(crypto)?,
            "client static",
        )?;
        self.noise
            .mix_shared_secret(self.server_eph.private_key.serialize(), &client_static)
            .map_err(crypto)?;
        let payload = self
            .noise
            .decrypt(finish.payload.as_deref().unwrap_or_default())
            .map_err(crypto)?;
        let (first, second) = self.noise.finish().map_err(crypto)?;
        Ok((
            Ciphers {
                read: first,
                write: second,
            },
            ClientHello {
                client_static,
                payload,
            },
        ))
    }
}

fn server_hello(
    ephemeral: Vec<u8>,
    encrypted_static: Option<Vec<u8>>,
    payload: Vec<u8>,
) -> Vec<u8> {
    wa::HandshakeMessage {
        server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
            ephemeral: Some(ephemeral),
            r#static: encrypted_static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacore_noise::{IkHandshakeState, IkServerHelloOutcome, XxHandshakeState};

    #[test]
    fn completes_xx_then_ik_with_the_library_initiator() {
        let server = ServerIdentity::generate();
        let client_static = KeyPair::generate(&mut rand10::rng());
        let mut xx =
            XxHandshakeState::new(client_static.clone(), b"login".to_vec(), &WA_CONN_HEADER)
                .unwrap();
        let Reply::Continue {
            server_hello,
            pending,
        } = server.respond(&xx.build_client_hello().unwrap()).unwrap()
        else {
            panic!("XX must continue");
        };
        let finish = xx
            .read_server_hello_and_build_client_finish(&server_hello)
            .unwrap();
        let outcome = xx.finish().unwrap();
        let (ciphers, hello) = pending.finish(&finish).unwrap();
        assert_eq!(hello.payload, b"login");
        assert_eq!(
            hello.client_static.as_slice(),
            client_static.public_key.public_key_bytes()
        );
        let mut frame = outcome
            .write_cipher
            .encrypt_with_counter(0, b"ping")
            .unwrap();
        ciphers
            .read
            .decrypt_in_place_with_counter(0, &mut frame)
            .unwrap();
        assert_eq!(frame, b"ping");

        let mut ik = IkHandshakeState::new(
            client_static,
            outcome.server_cert_chain.leaf_key,
            b"again".to_vec(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let Reply::Done {
            server_hello,
            ciphers,
            hello,
        } = server.respond(&ik.build_client_hello().unwrap()).unwrap()
        else {
            panic!("IK must be accepted");
        };
        assert_eq!(hello.payload, b"again");
        let IkServerHelloOutcome::Continue(out) = ik.read_server_hello(&server_hello).unwrap()
        else {
            panic!("the client must continue");
        };
        let mut frame = ciphers.write.encrypt_with_counter(0, b"pong").unwrap();
        out.read_cipher
            .decrypt_in_place_with_counter(0, &mut frame)
            .unwrap();
        assert_eq!(frame, b"pong");
    }
}
