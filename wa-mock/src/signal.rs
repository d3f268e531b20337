//! The fake recipients: each holds a Signal identity, a signed pre-key and one-time
//! pre-keys, served to the client through the `encrypt` key query, and decrypts
//! what the client sends it with the library's own Signal implementation. Also the
//! `usync` answers (is a number on WhatsApp, which devices it has).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use wacore_libsignal::protocol::{
    CiphertextMessage, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
    IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyId, PreKeyRecord, PreKeySignalMessage,
    PreKeyStore, ProtocolAddress, SessionRecord, SessionStore, SignalMessage, SignalProtocolError,
    SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore, Timestamp, UsePQRatchet,
    message_decrypt,
};
use waproto::whatsapp as wa;

use crate::conn::Outbound;
use crate::server::{Ack, AckBehaviour, Shared, Stanza, attr, bytes, now_ms, now_secs, result_for};

#[cfg(test)]
mod sealing;

type SignalResult<T> = Result<T, SignalProtocolError>;

/// How many one-time pre-keys a contact starts with.
const PRE_KEYS: u32 = 100;
const SIGNED_PRE_KEY_ID: u32 = 1;

/// Answers the library's Signal store calls from memory.
struct Identity {
    pair: IdentityKeyPair,
    registration_id: u32,
    known: HashMap<String, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for Identity {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.pair.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let old = self.known.insert(address.to_string(), *identity);
        Ok(match old {
            Some(old) if old != *identity => IdentityChange::ReplacedExisting,
            _ => IdentityChange::NewOrUnchanged,
        })
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(&address.to_string()).copied())
    }
}

struct PreKeys(HashMap<u32, PreKeyRecord>);

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .get(&u32::from(id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(&mut self, id: PreKeyId, record: &PreKeyRecord) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(id));
        Ok(())
    }
}

struct SignedPreKeys(SignedPreKeyRecord);

#[async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        if u32::from(id) == SIGNED_PRE_KEY_ID {
            Ok(self.0.clone())
        } else {
            Err(SignalProtocolError::InvalidSignedPreKeyId)
        }
    }

    async fn save_signed_pre_key(
        &mut self,
        _id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        self.0 = record.clone();
        Ok(())
    }
}

struct Sessions(HashMap<String, SessionRecord>);

#[async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(&address.to_string()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(&address.to_string()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(address.to_string(), record);
        Ok(())
    }
}

/// A fake WhatsApp user (one phone, device 0) and its Signal state.
pub struct Contact {
    identity: Identity,
    pre_keys: PreKeys,
    signed: SignedPreKeys,
    signed_public: Vec<u8>,
    signed_signature: Vec<u8>,
    sessions: Sessions,
    /// The next one-time pre-key handed out.
    next_pre_key: u32,
}

impl Contact {
    pub fn generate() -> Self {
        let mut rng = rand10::rng();
        let pair = IdentityKeyPair::generate(&mut rng);
        let signed = KeyPair::generate(&mut rng);
        let signed_signature = pair
            .private_key()
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let record = SignedPreKeyRecord::new(
            SIGNED_PRE_KEY_ID.into(),
            Timestamp::from_epoch_millis(now_secs() * 1000),
            &signed,
            &signed_signature,
        );
        let pre_keys = (1..=PRE_KEYS)
            .map(|id| {
                (
                    id,
                    PreKeyRecord::new(id.into(), &KeyPair::generate(&mut rng)),
                )
            })
            .collect();
        Self {
            identity: Identity {
                pair,
                registration_id: 1 + rand10::random::<u32>() % 16_000,
                known: HashMap::new(),
            },
            pre_keys: PreKeys(pre_keys),
            signed: SignedPreKeys(record),
            signed_public: signed.public_key.public_key_bytes().to_vec(),
            signed_signature,
            sessions: Sessions(HashMap::new()),
            next_pre_key: 1,
        }
    }

    /// The `<user>` node of a key query answer for this contact's device 0.
    fn bundle(&mut self, jid: Jid) -> Node {
        let mut keys = vec![
            NodeBuilder::new("registration")
                .bytes(self.identity.registration_id.to_be_bytes().to_vec())
                .build(),
            NodeBuilder::new("type").bytes(vec![5u8]).build(),
            NodeBuilder::new("identity")
                .bytes(self.identity.pair.public_key().public_key_bytes().to_vec())
                .build(),
        ];
        let id = self.next_pre_key;
        if let Some(Ok(public)) = self.pre_keys.0.get(&id).map(PreKeyRecord::public_key) {
            self.next_pre_key += 1;
            keys.push(
                NodeBuilder::new("key")
                    .children([
                        NodeBuilder::new("id").bytes(id3(id)).build(),
                        NodeBuilder::new("value")
                            .bytes(public.public_key_bytes().to_vec())
                            .build(),
                    ])
                    .build(),
            );
        }
        keys.push(
            NodeBuilder::new("skey")
                .children([
                    NodeBuilder::new("id").bytes(id3(SIGNED_PRE_KEY_ID)).build(),
                    NodeBuilder::new("value")
                        .bytes(self.signed_public.clone())
                        .build(),
                    NodeBuilder::new("signature")
                        .bytes(self.signed_signature.clone())
                        .build(),
                ])
                .build(),
        );
        NodeBuilder::new("user")
            .attr("jid", jid)
            .children(keys)
            .build()
    }

    /// Decrypts one `<enc>` payload from `sender`; answers the message.
    async fn decrypt(
        &mut self,
        sender: &Jid,
        kind: &str,
        version: u8,
        data: &[u8],
    ) -> Result<wa::Message, String> {
        let message = match kind {
            "pkmsg" => CiphertextMessage::PreKeySignalMessage(
                PreKeySignalMessage::try_from(data).map_err(|e| e.to_string())?,
            ),
            "msg" => CiphertextMessage::SignalMessage(
                SignalMessage::try_from(data).map_err(|e| e.to_string())?,
            ),
            other => return Err(format!("cannot decrypt an enc of type {other}")),
        };
        let address = ProtocolAddress::new(&sender.user, u32::from(sender.device).into());
        let mut rng = rand10::make_rng::<rand10::rngs::StdRng>();
        let decrypted = message_decrypt(
            &message,
            &address,
            &mut self.sessions,
            &mut self.identity,
            &mut self.pre_keys,
            &self.signed,
            &mut rng,
            UsePQRatchet::No,
        )
        .await
        .map_err(|e| e.to_string())?;
        wacore::messages::decode_plaintext(&decrypted.plaintext, version)
            .map_err(|e| format!("the plaintext is no message: {e}"))
    }
}

fn id3(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

/// The user a usync `<user>` asks about: its `jid`, or the number in its `<contact>`.
fn asked_user(user: &Node) -> Option<Jid> {
    if let Some(jid) = attr(user, "jid") {
        return jid.parse::<Jid>().ok().map(|j| j.to_non_ad());
    }
    user.get_optional_child("contact")
        .and_then(|c| c.content_as_string())
        .map(|s| Jid::pn(s.chars().filter(char::is_ascii_digit).collect::<String>()))
}

/// Answers a `usync` query: `contact` says whether a number is on WhatsApp, `lid`
/// gives the LID of a contact WhatsApp addresses by LID, `devices` lists device 0 of
/// each known contact (and no device of the phone's own account, so the client fans
/// out to nobody else).
pub(crate) fn usync(shared: &Shared, node: &Node) -> Node {
    let state = shared.lock();
    let Some(usync) = node.get_optional_child("usync") else {
        return result_for(node).build();
    };
    let protocols: Vec<String> = usync
        .get_optional_child("query")
        .and_then(Node::children)
        .map(|c| c.iter().map(|p| p.tag.to_string()).collect())
        .unwrap_or_default();
    let users: Vec<Node> = usync
        .get_optional_child("list")
        .map(|list| {
            list.get_children_by_tag("user")
                .filter_map(|user| {
                    let asked = asked_user(user)?;
                    let number = state.number_of(&asked);
                    let known = number
                        .as_ref()
                        .is_some_and(|n| state.contacts.contains_key(n));
                    let lid = number.as_ref().and_then(|n| state.lid_only.get(n));
                    let mut children = Vec::new();
                    for protocol in &protocols {
                        match protocol.as_str() {
                            "contact" => children.push(
                                NodeBuilder::new("contact")
                                    .attr("type", if known { "in" } else { "out" })
                                    .build(),
                            ),
                            "lid" => {
                                if let Some(lid) = lid {
                                    children.push(
                                        NodeBuilder::new("lid")
                                            .attr("val", Jid::lid(lid.clone()))
                                            .build(),
                                    );
                                }
                            }
                            "devices" => {
                                let devices: Vec<Node> = if known {
                                    vec![NodeBuilder::new("device").attr("id", "0").build()]
                                } else {
                                    Vec::new()
                                };
                                children.push(
                                    NodeBuilder::new("devices")
                                        .children([NodeBuilder::new("device-list")
                                            .children(devices)
                                            .build()])
                                        .build(),
                                );
                            }
                            _ => {}
                        }
                    }
                    Some(
                        NodeBuilder::new("user")
                            .attr("jid", asked)
                            .children(children)
                            .build(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut answer = NodeBuilder::new("usync");
    if let Some(sid) = attr(usync, "sid") {
        answer = answer.attr("sid", sid);
    }
    result_for(node)
        .children([answer
            .children([NodeBuilder::new("list").children(users).build()])
            .build()])
        .build()
}

/// Answers the `encrypt` namespace: key bundles for known contacts, under the LID
/// alone for a contact addressed by LID (an error for anyone else), the pre-key count, and accepts the client's own pre-key upload.
pub(crate) fn encrypt_iq(shared: &Shared, node: &Node) -> Node {
    let Some(key) = node.get_optional_child("key") else {
        if node.get_optional_child("count").is_some() {
            return result_for(node)
                .children([NodeBuilder::new("count").attr("value", "50").build()])
                .build();
        }
        return result_for(node).build();
    };
    let mut state = shared.lock();
    let users: Vec<Node> = key
        .get_children_by_tag("user")
        .filter_map(|user| {
            let jid: Jid = attr(user, "jid")?.parse().ok()?;
            let contact = state
                .keyed_contact(&jid)
                .and_then(|number| state.contacts.get_mut(&number));
            Some(match contact {
                Some(contact) if jid.device == 0 => contact.bundle(jid),
                _ => NodeBuilder::new("user")
                    .attr("jid", jid)
                    .children([NodeBuilder::new("error")
                        .attr("code", "404")
                        .attr("text", "item-not-found")
                        .build()])
                    .build(),
            })
        })
        .collect();
    result_for(node)
        .children([NodeBuilder::new("list").children(users).build()])
        .build()
}

/// Takes a message from the client: decrypts each part addressed to a known
/// contact's device 0, by number or by LID (so the Signal sessions stay in step whatever the answer), and
/// answers as the recipient's [`AckBehaviour`] says. A recipient's phone keeps a
/// message id once, so a resend under the same id is not a second message.
pub(crate) fn handle_message(shared: &Arc<Shared>, id: u64, node: &Node) {
    let Some(message_id) = attr(node, "id") else {
        return;
    };
    let to = attr(node, "to").unwrap_or_default();
    let (recipient, sender, phone) = {
        let mut state = shared.lock();
        let recipient = to
            .parse::<Jid>()
            .ok()
            .and_then(|jid| state.number_of(&jid))
            .unwrap_or_else(|| to.split(['@', ':']).next().unwrap_or_default().to_owned());
        let connection = state.connections.get(&id);
        let device = connection.and_then(|c| c.device);
        let phone = connection.map_or(0, |c| c.phone);
        let number = state.phones[phone].number.clone();
        state.stanzas.push(Stanza {
            from: number.clone(),
            to: recipient.clone(),
            message_id: message_id.clone(),
        });
        (recipient, device.map(|d| Jid::pn_device(number, d)), phone)
    };
    let from = to.parse::<Jid>().unwrap_or_else(|_| Jid::pn(to.clone()));
    let Some(sender) = sender else {
        return;
    };
    let mut parts: Vec<(Jid, String, u8, Vec<u8>)> = Vec::new();
    let direct = node.get_optional_child("enc").map(|enc| (to.clone(), enc));
    let listed = node
        .get_optional_child("participants")
        .map(|p| {
            p.get_children_by_tag("to")
                .filter_map(|t| Some((attr(t, "jid")?, t.get_optional_child("enc")?)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for (jid, enc) in direct.into_iter().chain(listed) {
        let Ok(jid) = jid.parse::<Jid>() else {
            continue;
        };
        let kind = attr(enc, "type").unwrap_or_default();
        let version = attr(enc, "v").and_then(|v| v.parse().ok()).unwrap_or(2);
        parts.push((jid, kind, version, bytes(enc).unwrap_or_default().to_vec()));
    }
    let shared = Arc::clone(shared);
    // Decrypting awaits the library's store calls; the connection goes on meanwhile,
    // but the ack is sent only once the text is recorded.
    tokio::spawn(async move {
        let behaviour = {
            let mut state = shared.lock();
            let account = &mut state.phones[phone];
            let locked = account.time_locked();
            let cold = account.cold.contains(&recipient);
            let capped = cold
                && account
                    .current_quota()
                    .is_some_and(|q| !q.opened.contains(&recipient) && q.opened.len() >= q.total);
            if locked && cold {
                AckBehaviour::Error("463".into())
            } else if capped {
                AckBehaviour::Error("475".into())
            } else {
                state
                    .behaviours
                    .get(&recipient)
                    .cloned()
                    .unwrap_or_default()
            }
        };
        let delivers = matches!(behaviour, AckBehaviour::Normal | AckBehaviour::Slow(_));
        let mut fresh = false;
        {
            let _guard = shared.decrypting.lock().await;
            for (jid, kind, version, data) in parts {
                let contact = {
                    let mut state = shared.lock();
                    state
                        .number_of(&jid)
                        .and_then(|number| Some((state.contacts.remove(&number)?, number)))
                };
                let Some((mut contact, number)) = contact else {
                    continue;
                };
                let message = contact.decrypt(&sender, &kind, version, &data).await;
                shared.lock().contacts.insert(number.clone(), contact);
                match message {
                    Ok(message) if delivers => {
                        fresh |= crate::attachment::receive(
                            &shared,
                            phone,
                            number,
                            &message_id,
                            &message,
                        )
                        .await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the mock cannot decrypt a message"),
                }
            }
        }
        let error = match behaviour {
            AckBehaviour::Never => {
                shared.touch();
                return;
            }
            AckBehaviour::Slow(delay) => {
                shared.touch();
                tokio::time::sleep(delay).await;
                None
            }
            AckBehaviour::Error(code) => Some(code),
            AckBehaviour::Normal => None,
        };
        let mut ack = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", message_id.clone())
            .attr("from", from)
            .attr("t", now_secs());
        if let Some(code) = &error {
            ack = ack.attr("error", code.clone());
        }
        let ack = ack.build();
        let accepted = error.is_none();
        {
            let mut state = shared.lock();
            state.acks.push(Ack {
                message_id: message_id.clone(),
                error,
                at_ms: now_ms(),
            });
            if let Some(c) = state.connections.get(&id) {
                let _ = c.tx.send(Outbound::Node(Box::new(ack)));
            }
        }
        if accepted && fresh {
            shared.delivered(&recipient, &message_id);
        }
        if accepted {
            let mut state = shared.lock();
            let account = &mut state.phones[phone];
            let cold = account.cold.contains(&recipient);
            if let Some(quota) = account.current_quota().filter(|_| cold) {
                quota.opened.insert(recipient.clone());
            }
        }
        shared.touch();
    });
}
