//! The server's state (the phone's account, its linked devices, the open
//! connections, the contacts and what they received) and the answer to every node a
//! client sends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent};
use wacore_libsignal::protocol::KeyPair;
use waproto::whatsapp as wa;

use crate::conn::Outbound;
use crate::noise::ServerIdentity;
use crate::signal::Contact;

pub(crate) const SERVER: &str = "s.whatsapp.net";

/// The document id of WhatsApp Web's `WAWebMexFetchReachoutTimelockJobQuery`.
const REACHOUT_TIMELOCK_QUERY: &str = "23983697327930364";
/// The document id of WhatsApp Web's `WAWebMexFetchNewChatMessageCappingInfoJobQuery`.
const NEW_CHAT_CAPPING_QUERY: &str = "24503548349331633";

/// How many new chats (messages to cold contacts not written to before) the account
/// may open until the cycle ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewChatQuota {
    pub total: usize,
    pub cycle_start: u64,
    pub cycle_end: u64,
    /// The cold contacts a message went to in this cycle.
    pub opened: std::collections::BTreeSet<String>,
}

/// One phone: a WhatsApp account, its linked devices, and what WhatsApp holds
/// against it. The mock holds one per account a test links.
pub(crate) struct Phone {
    pub number: String,
    pub lid: String,
    pub account: KeyPair,
    pub next_device: u16,
    pub devices: BTreeMap<u16, LinkedDevice>,
    /// Recipients that never wrote to this account: a reach-out time lock keeps
    /// messages to them out (nack 463) while it lasts.
    pub cold: std::collections::BTreeSet<String>,
    /// Set by `new_chat_quota`; lapses at the cycle's end.
    pub quota: Option<NewChatQuota>,
    /// Set by `reach_out_time_lock`: the lock's end (secs).
    pub time_lock_until: Option<u64>,
    /// Set by `temporary_ban`: logins get a 402 failure until this time (secs).
    pub banned_until: Option<u64>,
    pub logins: u64,
}

impl Phone {
    pub(crate) fn new(number: String) -> Self {
        let lid = format!("1{}", &number[number.len().saturating_sub(10)..]);
        Self {
            number,
            lid,
            account: KeyPair::generate(&mut rand10::rng()),
            next_device: 1,
            devices: BTreeMap::new(),
            cold: Default::default(),
            quota: None,
            time_lock_until: None,
            banned_until: None,
            logins: 0,
        }
    }

    /// The new-chat quota while its cycle lasts.
    pub(crate) fn current_quota(&mut self) -> Option<&mut NewChatQuota> {
        if self
            .quota
            .as_ref()
            .is_some_and(|q| q.cycle_end <= now_secs())
        {
            self.quota = None;
        }
        self.quota.as_mut()
    }

    pub(crate) fn time_locked(&self) -> bool {
        self.time_lock_until.is_some_and(|t| t > now_secs())
    }
}

/// A device linked to the phone's account.
#[derive(Debug, Clone)]
pub(crate) struct LinkedDevice {
    pub noise_key: [u8; 32],
}

/// A linking the phone started, waiting for the device's signature.
#[derive(Debug, Clone)]
pub(crate) struct PendingLink {
    /// The phone (index in `State::phones`) linking the device.
    pub phone: usize,
    pub request_id: String,
    pub device: u16,
    pub noise_key: [u8; 32],
    pub identity_key: [u8; 32],
}

/// A device that asked to be linked by pair code (`companion_hello`).
pub(crate) struct CodeHello {
    pub connection: u64,
    /// The phone (index in `State::phones`) the code was asked for.
    pub phone: usize,
    pub pairing_ref: Vec<u8>,
    pub wrapped_ephemeral: Vec<u8>,
    /// Set once the phone's user typed a code.
    pub entry: Option<crate::pairing::CodeEntry>,
}

pub(crate) struct Connection {
    pub tx: mpsc::UnboundedSender<Outbound>,
    pub noise_key: [u8; 32],
    /// The device this connection logged in as; `None` while pairing.
    pub device: Option<u16>,
    /// The phone (index in `State::phones`) whose device it logged in as.
    pub phone: usize,
    pub refs: Vec<String>,
    pub pending: Option<PendingLink>,
    /// Set by `stall`: the server reads this connection's nodes and answers none
    /// (a connection that looks open but is dead on WhatsApp's side).
    pub stalled: bool,
    /// Set by `ignore_sends`: messages get no ack and pings no answer.
    pub ignores_sends: bool,
}

/// How the server answers messages to one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AckBehaviour {
    /// Acks at once; the recipient gets the message.
    #[default]
    Normal,
    /// Refuses the message with a nack carrying this error code (as WhatsApp does
    /// with 479 for a malformed field or 463 under a time lock); the recipient gets
    /// nothing.
    Error(String),
    /// The recipient gets the message, the ack comes this much later.
    Slow(std::time::Duration),
    /// Never acks, and the recipient gets nothing.
    Never,
}

/// An `<ack>` the server sent for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub message_id: String,
    /// The nack's error code; `None` for an accepted message.
    pub error: Option<String>,
    /// When the server sent it (ms since the epoch).
    pub at_ms: i64,
}

/// A message stanza as it reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The sending account's number (digits).
    pub from: String,
    /// The recipient's number (digits).
    pub to: String,
    pub message_id: String,
}

/// A message the mock decrypted for one of its contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The number (digits) of the account that sent it.
    pub from: String,
    /// The contact's number (digits).
    pub to: String,
    pub message_id: String,
    /// The text; for a media message its caption (empty when it has none).
    pub text: String,
    /// The file of an image or document message, decrypted.
    pub media: Option<crate::ReceivedMedia>,
    /// When the mock decrypted it (ms since the epoch).
    pub at_ms: i64,
}

pub(crate) struct State {
    /// Every account's phone; the first is the one the server started with.
    pub phones: Vec<Phone>,
    pub connections: BTreeMap<u64, Connection>,
    pub contacts: BTreeMap<String, Contact>,
    /// Contacts WhatsApp addresses by LID only: number (digits) to LID (digits).
    /// Their keys are served under the LID alone, and only a message encrypted for
    /// the LID reaches them.
    pub lid_only: BTreeMap<String, String>,
    /// Contacts whose phone gives no Signal keys: key queries for them get `404`.
    pub keyless: std::collections::BTreeSet<String>,
    /// How many LIDs `add_lid_contact` handed out (each LID is given once).
    pub lids_given: u64,
    /// Each pair-code step the phone refused (a mistyped code among them), why.
    pub refused_pair_steps: Vec<String>,
    pub received: Vec<Received>,
    /// Every `<ack>` sent for a message, in order.
    pub acks: Vec<Ack>,
    /// Every message stanza that arrived, in order (resends included).
    pub stanzas: Vec<Stanza>,
    /// How messages to each recipient (digits) are answered; absent: normally.
    pub behaviours: BTreeMap<String, AckBehaviour>,
    /// Whether each delivered message gets a delivery receipt from its recipient's
    /// phone by itself (the standalone mock); off in tests, which send receipts.
    pub auto_receipts: bool,
    /// Recipients whose phone is off: with automatic receipts, their receipts wait
    /// here (number, message id) until released.
    pub offline: std::collections::BTreeSet<String>,
    pub held_receipts: Vec<(String, String)>,
    /// Devices waiting to be linked by pair code, newest last.
    pub code_hellos: Vec<CodeHello>,
    /// Set by `ignore_sends`: every connection logged in from now on takes no
    /// message and answers no ping (other queries it answers).
    pub ignore_sends: bool,
    pub iq_counter: u64,
}

impl State {
    /// The phone of the account whose number is `number` (digits).
    pub(crate) fn phone_index(&self, number: &str) -> Option<usize> {
        self.phones.iter().position(|p| p.number == number)
    }

    /// The phone of the account that sent `message_id`, when the server saw it.
    pub(crate) fn sender_of(&self, message_id: &str) -> Option<usize> {
        let stanza = self.stanzas.iter().find(|s| s.message_id == message_id)?;
        self.phone_index(&stanza.from)
    }

    /// The number (digits) of the contact `jid` names: its user for a phone-number
    /// JID, the number behind the LID for a LID.
    pub(crate) fn number_of(&self, jid: &Jid) -> Option<String> {
        if jid.is_lid() {
            self.lid_only
                .iter()
                .find(|(_, lid)| lid.as_str() == jid.user.as_str())
                .map(|(number, _)| number.clone())
        } else {
            Some(jid.user.to_string())
        }
    }

    /// The contact whose Signal keys and messages go by `jid`: a contact addressed
    /// by LID only is not reached by its phone number.
    pub(crate) fn keyed_contact(&self, jid: &Jid) -> Option<String> {
        let number = self.number_of(jid)?;
        let by_number_only = !jid.is_lid() && self.lid_only.contains_key(&number);
        let keyed = self.contacts.contains_key(&number) && !self.keyless.contains(&number);
        (!by_number_only && keyed).then_some(number)
    }
}

pub(crate) struct Shared {
    identity: ServerIdentity,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    next_id: AtomicU64,
    /// Messages are decrypted one at a time, in arrival order.
    pub(crate) decrypting: tokio::sync::Mutex<()>,
    /// The media host's uploads and blobs, and the media messages that did not open.
    pub(crate) media: crate::media::Store,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

pub(crate) fn bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        Some(NodeContent::String(s)) => Some(s.as_bytes()),
        _ => None,
    }
}

/// An `<iq type="error">` answer to `node`.
pub(crate) fn error_for(node: &Node, code: u16, text: &str) -> Node {
    let mut reply = NodeBuilder::new("iq")
        .attr("type", "error")
        .attr("from", SERVER);
    if let Some(id) = attr(node, "id") {
        reply = reply.attr("id", id);
    }
    reply
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text.to_owned())
            .build()])
        .build()
}

pub(crate) fn result_for(node: &Node) -> NodeBuilder {
    let mut reply = NodeBuilder::new("iq")
        .attr("type", "result")
        .attr("from", SERVER);
    if let Some(id) = attr(node, "id") {
        reply = reply.attr("id", id);
    }
    reply
}

impl Shared {
    pub(crate) fn new(number: String) -> Self {
        Self {
            identity: ServerIdentity::generate(),
            state: Mutex::new(State {
                phones: vec![Phone::new(number)],
                connections: BTreeMap::new(),
                contacts: BTreeMap::new(),
                lid_only: BTreeMap::new(),
                lids_given: 0,
                refused_pair_steps: Vec::new(),
                keyless: std::collections::BTreeSet::new(),
                received: Vec::new(),
                acks: Vec::new(),
                stanzas: Vec::new(),
                behaviours: BTreeMap::new(),
                ignore_sends: false,
                code_hellos: Vec::new(),
                auto_receipts: false,
                offline: std::collections::BTreeSet::new(),
                held_receipts: Vec::new(),
                iq_counter: 0,
            }),
            changed: watch::Sender::new(0),
            next_id: AtomicU64::new(1),
            decrypting: tokio::sync::Mutex::new(()),
            media: crate::media::Store::new(),
        }
    }

    pub(crate) fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn touch(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// A connection logged in as device 1 of the first phone, with no socket
    /// behind it: what the server sends it arrives on the receiver.
    #[cfg(test)]
    pub(crate) fn test_connection(&self) -> (u64, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_connection_id();
        let connection = Connection {
            tx,
            noise_key: [0; 32],
            device: Some(1),
            phone: 0,
            refs: Vec::new(),
            pending: None,
            stalled: false,
            ignores_sends: false,
        };
        self.lock().connections.insert(id, connection);
        (id, rx)
    }

    pub(crate) fn connection_closed(&self, id: u64) {
        self.lock().connections.remove(&id);
        self.touch();
    }

    /// A client finished the handshake: log it in, refuse it, or start linking.
    pub(crate) fn connection_opened(
        &self,
        id: u64,
        noise_key: [u8; 32],
        payload: &wa::ClientPayload,
        tx: mpsc::UnboundedSender<Outbound>,
    ) {
        let mut state = self.lock();
        let mut connection = Connection {
            tx,
            noise_key,
            device: None,
            phone: 0,
            refs: Vec::new(),
            pending: None,
            stalled: false,
            ignores_sends: false,
        };
        match (payload.username, payload.device) {
            (Some(user), device) => {
                let device = device.unwrap_or(0) as u16;
                let phone = state.phone_index(&user.to_string());
                let known = phone.is_some_and(|p| {
                    state.phones[p]
                        .devices
                        .get(&device)
                        .is_some_and(|d| d.noise_key == noise_key)
                });
                let phone = phone.unwrap_or(0);
                let banned = state.phones[phone]
                    .banned_until
                    .filter(|until| *until > now_secs());
                let reply = if !known {
                    NodeBuilder::new("failure").attr("reason", "401").build()
                } else if let Some(until) = banned {
                    NodeBuilder::new("failure")
                        .attr("reason", "402")
                        .attr("code", "101")
                        .attr("expire", until.saturating_sub(now_secs()).max(1))
                        .build()
                } else {
                    connection.device = Some(device);
                    connection.phone = phone;
                    connection.ignores_sends = state.ignore_sends;
                    state.phones[phone].logins += 1;
                    NodeBuilder::new("success")
                        .attr("t", now_secs())
                        .attr(
                            "lid",
                            Jid::lid_device(state.phones[phone].lid.clone(), device),
                        )
                        .attr("props", "1")
                        .build()
                };
                let _ = connection.tx.send(Outbound::Node(Box::new(reply)));
            }
            (None, _) => {
                let refs: Vec<String> = (0..6).map(|i| format!("mock-ref-{id}-{i}")).collect();
                state.iq_counter += 1;
                let request =
                    NodeBuilder::new("iq")
                        .attr("from", SERVER)
                        .attr("type", "set")
                        .attr("id", format!("mock-{}", state.iq_counter))
                        .attr("xmlns", "md")
                        .children([NodeBuilder::new("pair-device")
                            .children(refs.iter().map(|r| {
                                NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()
                            }))
                            .build()])
                        .build();
                connection.refs = refs;
                let _ = connection.tx.send(Outbound::Node(Box::new(request)));
            }
        }
        state.connections.insert(id, connection);
        drop(state);
        self.touch();
    }

    /// `phone`'s phone sends a receipt for `message_id` to the linked devices: from
    /// its LID when WhatsApp addresses it by LID.
    pub(crate) fn send_receipt(
        &self,
        phone: &str,
        message_id: &str,
        kind: crate::ReceiptKind,
    ) -> crate::Result<()> {
        let state = self.lock();
        let from = match state.lid_only.get(phone) {
            Some(lid) => Jid::lid(lid.clone()),
            None => Jid::pn(phone.to_owned()),
        };
        let mut receipt = NodeBuilder::new("receipt")
            .attr("from", from)
            .attr("id", message_id.to_owned())
            .attr("t", now_secs());
        if kind == crate::ReceiptKind::Read {
            receipt = receipt.attr("type", "read");
        }
        let node = receipt.build();
        // To the devices of the account that sent the message (every logged-in device
        // for a message the server never saw).
        let sender = state.sender_of(message_id);
        let mut sent = false;
        for c in state
            .connections
            .values()
            .filter(|c| c.device.is_some() && sender.is_none_or(|p| p == c.phone))
        {
            sent |= c.tx.send(Outbound::Node(Box::new(node.clone()))).is_ok();
        }
        if sent {
            Ok(())
        } else {
            Err(crate::Error::Closed)
        }
    }

    /// A message reached `phone`'s phone: with automatic receipts, the phone
    /// confirms it shortly, or keeps the receipt while it is offline.
    pub(crate) fn delivered(self: &Arc<Self>, phone: &str, message_id: &str) {
        let mut state = self.lock();
        if !state.auto_receipts {
            return;
        }
        if state.offline.contains(phone) {
            state
                .held_receipts
                .push((phone.to_owned(), message_id.to_owned()));
            return;
        }
        drop(state);
        let (shared, phone, id) = (Arc::clone(self), phone.to_owned(), message_id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if let Err(e) = shared.send_receipt(&phone, &id, crate::ReceiptKind::Delivered) {
                tracing::warn!(error = %e, "the mock cannot send a delivery receipt");
            }
        });
    }

    pub(crate) fn send(&self, id: u64, node: Node) {
        if let Some(c) = self.lock().connections.get(&id) {
            let _ = c.tx.send(Outbound::Node(Box::new(node)));
        }
    }

    /// Answers one node from connection `id`.
    pub(crate) fn handle(self: &Arc<Self>, id: u64, node: Node) {
        tracing::trace!(connection = id, tag = %node.tag, "mock received");
        let (stalled, ignores_sends) = self
            .lock()
            .connections
            .get(&id)
            .map_or((false, false), |c| (c.stalled, c.ignores_sends));
        let is_send = node.tag == "message"
            || (node.tag == "iq" && attr(&node, "xmlns").as_deref() == Some("w:p"));
        if stalled || (ignores_sends && is_send) {
            return;
        }
        match node.tag.as_ref() {
            "iq" => self.handle_iq(id, &node),
            "message" => crate::signal::handle_message(self, id, &node),
            _ => {}
        }
        self.touch();
    }

    fn handle_iq(&self, id: u64, node: &Node) {
        let kind = attr(node, "type").unwrap_or_default();
        if kind == "result" || kind == "error" {
            if let Some(sign) = node.get_optional_child("pair-device-sign") {
                self.finish_link(id, node, sign);
            }
            return;
        }
        let xmlns = attr(node, "xmlns").unwrap_or_default();
        let reply = match xmlns.as_str() {
            "usync" => crate::signal::usync(self, node),
            "encrypt" => crate::signal::encrypt_iq(self, node),
            "passive" => {
                let offline = NodeBuilder::new("ib")
                    .children([NodeBuilder::new("offline").attr("count", "0").build()])
                    .build();
                self.send(id, result_for(node).build());
                offline
            }
            "w:sync:app:state" => app_state_reply(node),
            "w:mex" => self.mex_reply(id, node),
            "w:m" => crate::media::media_conn_reply(self, node),
            "md" if node.get_optional_child("link_code_companion_reg").is_some() => {
                match self.link_by_code(id, node) {
                    // Answered, and the phone's pair-success sent after it.
                    Ok(None) => return,
                    Ok(Some(reply)) => reply,
                    Err(e) => {
                        tracing::warn!(error = %e, "the mock phone refuses a pair-code step");
                        self.lock().refused_pair_steps.push(e.to_string());
                        error_for(node, 400, "bad-request")
                    }
                }
            }
            _ => {
                tracing::debug!(xmlns = %xmlns, "mock answers an iq with an empty result");
                result_for(node).build()
            }
        };
        self.send(id, reply);
    }

    /// Answers the GraphQL queries WhatsApp Web sends over `w:mex`; the reach-out
    /// time-lock query with the account's lock, any other with no data.
    fn mex_reply(&self, id: u64, node: &Node) -> Node {
        let query_id = node
            .get_optional_child("query")
            .and_then(|q| attr(q, "query_id"))
            .unwrap_or_default();
        let phone = self.lock().connections.get(&id).map_or(0, |c| c.phone);
        let data = if query_id == NEW_CHAT_CAPPING_QUERY {
            let mut state = self.lock();
            let info = state.phones[phone].current_quota().map(|q| {
                format!(
                    r#"{{"total_quota":"{}","used_quota":"{}","cycle_start_timestamp":{},"cycle_end_timestamp":{},"server_sent_timestamp":{}}}"#,
                    q.total,
                    q.opened.len(),
                    q.cycle_start,
                    q.cycle_end,
                    now_secs()
                )
            });
            format!(
                r#"{{"data":{{"xwa2_message_capping_info":{}}}}}"#,
                info.unwrap_or_else(|| "null".into())
            )
        } else if query_id == REACHOUT_TIMELOCK_QUERY {
            let until = self.lock().phones[phone]
                .time_lock_until
                .filter(|t| *t > now_secs());
            format!(
                r#"{{"data":{{"xwa2_fetch_account_reachout_timelock":{{"is_active":{},"time_enforcement_ends":"{}","enforcement_type":"DEFAULT"}}}}}}"#,
                until.is_some(),
                until.unwrap_or(0)
            )
        } else {
            r#"{"data":null}"#.to_owned()
        };
        result_for(node)
            .children([NodeBuilder::new("result").bytes(data.into_bytes()).build()])
            .build()
    }

    /// The two steps of linking by pair code the device sends: `companion_hello`
    /// (kept until the phone's user types the code) and `companion_finish` (the key
    /// bundle, after which the phone sends `pair-success`).
    fn link_by_code(&self, id: u64, node: &Node) -> crate::Result<Option<Node>> {
        let reg = node
            .get_optional_child("link_code_companion_reg")
            .ok_or(crate::Error::Closed)?;
        let child = |tag: &str| {
            reg.get_optional_child(tag)
                .and_then(bytes)
                .map(<[u8]>::to_vec)
        };
        let mut state = self.lock();
        let asked = attr(reg, "jid").unwrap_or_default();
        let Some(phone) = state.phone_index(asked.split('@').next().unwrap_or_default()) else {
            let numbers: Vec<&str> = state.phones.iter().map(|p| p.number.as_str()).collect();
            return Err(crate::Error::Phone(format!(
                "a pair code was asked for another number than this mock's phones ({})",
                numbers.join(", ")
            )));
        };
        match attr(reg, "stage").as_deref() {
            Some("companion_hello") => {
                let wrapped = child("link_code_pairing_wrapped_companion_ephemeral_pub")
                    .filter(|w| w.len() == 80)
                    .ok_or_else(|| crate::Error::Phone("companion_hello without its key".into()))?;
                state.iq_counter += 1;
                let pairing_ref = format!("mock-code-ref-{id}-{}", state.iq_counter).into_bytes();
                state.code_hellos.retain(|h| h.connection != id);
                state.code_hellos.push(CodeHello {
                    connection: id,
                    phone,
                    pairing_ref: pairing_ref.clone(),
                    wrapped_ephemeral: wrapped,
                    entry: None,
                });
                Ok(Some(
                    result_for(node)
                        .children([NodeBuilder::new("link_code_companion_reg")
                            .children([NodeBuilder::new("link_code_pairing_ref")
                                .bytes(pairing_ref)
                                .build()])
                            .build()])
                        .build(),
                ))
            }
            Some("companion_finish") => {
                let pairing_ref = child("link_code_pairing_ref").unwrap_or_default();
                let bundle = child("link_code_pairing_wrapped_key_bundle").unwrap_or_default();
                let identity: [u8; 32] = child("companion_identity_public")
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| {
                        crate::Error::Phone("companion_finish without its identity key".into())
                    })?;
                let position = state
                    .code_hellos
                    .iter()
                    .position(|h| {
                        h.connection == id && h.pairing_ref == pairing_ref && h.entry.is_some()
                    })
                    .ok_or_else(|| {
                        crate::Error::Phone("companion_finish before the code was entered".into())
                    })?;
                let hello = state.code_hellos.remove(position);
                let entry = hello.entry.as_ref().ok_or(crate::Error::Closed)?;
                let adv_secret = crate::pairing::open_key_bundle(
                    &state.phones[phone].account,
                    entry,
                    &bundle,
                    &identity,
                )?;
                let noise_key = state
                    .connections
                    .get(&id)
                    .ok_or(crate::Error::Closed)?
                    .noise_key;
                let device = crate::pairing::ScannedQr {
                    pairing_ref: String::new(),
                    noise_key,
                    identity_key: identity,
                    adv_secret,
                };
                // The answer goes first, then the phone's pair-success.
                let answer = result_for(node).build();
                if let Some(c) = state.connections.get(&id) {
                    let _ = c.tx.send(Outbound::Node(Box::new(answer)));
                }
                self.send_pair_success(&mut state, phone, id, &device)?;
                Ok(None)
            }
            other => Err(crate::Error::Phone(format!(
                "unknown pair-code stage {other:?}"
            ))),
        }
    }

    /// The phone answers the device on connection `id` with `pair-success`: a device
    /// identity signed with the account key and HMAC-keyed with the device's secret.
    pub(crate) fn send_pair_success(
        &self,
        state: &mut State,
        phone: usize,
        id: u64,
        device: &crate::pairing::ScannedQr,
    ) -> crate::Result<()> {
        let account = state.phones.get_mut(phone).ok_or(crate::Error::Closed)?;
        let number = account.number.clone();
        let lid = account.lid.clone();
        let index = account.next_device;
        let identity = crate::pairing::signed_device_identity(
            &account.account,
            device,
            index.into(),
            now_secs(),
        )?;
        account.next_device += 1;
        state.iq_counter += 1;
        let request_id = format!("mock-{}", state.iq_counter);
        let node = NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "set")
            .attr("id", request_id.clone())
            .attr("xmlns", "md")
            .children([NodeBuilder::new("pair-success")
                .children([
                    NodeBuilder::new("device-identity").bytes(identity).build(),
                    NodeBuilder::new("device")
                        .attr("jid", Jid::pn_device(number, index))
                        .attr("lid", Jid::lid_device(lid, index))
                        .build(),
                    NodeBuilder::new("biz").attr("name", "AbTrack Mock").build(),
                    NodeBuilder::new("platform").attr("name", "android").build(),
                ])
                .build()])
            .build();
        let connection = state.connections.get_mut(&id).ok_or(crate::Error::Closed)?;
        connection.pending = Some(PendingLink {
            phone,
            request_id,
            device: index,
            noise_key: device.noise_key,
            identity_key: device.identity_key,
        });
        connection
            .tx
            .send(Outbound::Node(Box::new(node)))
            .map_err(|_| crate::Error::Closed)
    }

    fn finish_link(&self, id: u64, node: &Node, sign: &Node) {
        let mut state = self.lock();
        let Some(pending) = state
            .connections
            .get_mut(&id)
            .and_then(|c| c.pending.take())
        else {
            return;
        };
        if attr(node, "id").as_deref() != Some(pending.request_id.as_str()) {
            return;
        }
        let signed = sign
            .get_optional_child("device-identity")
            .and_then(bytes)
            .unwrap_or_default();
        let Some(phone) = state.phones.get_mut(pending.phone) else {
            return;
        };
        if let Err(e) =
            crate::pairing::verify_device_signature(&phone.account, &pending.identity_key, signed)
        {
            tracing::warn!(error = %e, "the mock phone rejects the device's signature");
            return;
        }
        phone.devices.insert(
            pending.device,
            LinkedDevice {
                noise_key: pending.noise_key,
            },
        );
        if let Some(c) = state.connections.get(&id) {
            let restart = NodeBuilder::new("stream:error").attr("code", "515").build();
            let _ = c.tx.send(Outbound::Node(Box::new(restart)));
            let _ = c.tx.send(Outbound::Close);
        }
    }
}

/// Answers an app-state sync with an empty state for every collection asked.
fn app_state_reply(node: &Node) -> Node {
    let collections: Vec<Node> = node
        .get_optional_child("sync")
        .map(|sync| {
            sync.get_children_by_tag("collection")
                .map(|c| {
                    NodeBuilder::new("collection")
                        .attr("name", attr(c, "name").unwrap_or_default())
                        .attr("version", "0")
                        .attr("has_more_patches", "false")
                        .build()
                })
                .collect()
        })
        .unwrap_or_default();
    result_for(node)
        .children([NodeBuilder::new("sync").children(collections).build()])
        .build()
}
