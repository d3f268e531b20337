//! A local WhatsApp Web server and phone, as test support: the real `whatsapp-rust`
//! client links to it by QR code, logs in, asks it about numbers and keys, and sends
//! end-to-end encrypted messages that the mock decrypts, so tests can check the exact
//! text each fake recipient got. Media goes as with WhatsApp: the client uploads
//! the encrypted file to the mock's HTTPS media host, and a recipient opens the file
//! a message names, so tests see the decrypted bytes. The server's certificate
//! chain is self-made: only a client built with `whatsapp-rust`'s
//! `danger-skip-cert-chain-verify` feature accepts it (and the media host's
//! certificate only an HTTP client that skips TLS verification), which is why this
//! crate is only ever a dev-dependency.

#![forbid(unsafe_code)]

mod attachment;
mod conn;
pub mod control;
pub mod error;
mod media;
mod noise;
pub mod pairing;
mod server;
mod signal;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wacore_binary::builder::NodeBuilder;

pub use crate::attachment::{MediaFailure, MediaKind, ReceivedMedia};
use crate::conn::Outbound;
pub use crate::error::{Error, Result};
pub use crate::media::{MAX_UPLOAD_BYTES, Upload};
pub use crate::server::{Ack, AckBehaviour, Received, Stanza};
use crate::server::{SERVER, Shared, now_secs};

/// The receipts a recipient's phone sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

/// A recipient as the mock treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The number (digits).
    pub number: String,
    /// Its LID (digits) when WhatsApp addresses it by LID only.
    pub lid: Option<String>,
    pub behaviour: AckBehaviour,
    pub cold: bool,
    pub offline: bool,
    /// Delivery receipts its phone holds while offline.
    pub held_receipts: usize,
}

/// A running mock; stops when dropped.
pub struct MockServer {
    shared: Arc<Shared>,
    url: String,
    accept: JoinHandle<()>,
    /// The media host's task; its connections end with it.
    media: JoinHandle<()>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.media.abort();
        self.drop_connections();
    }
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("url", &self.url)
            .finish()
    }
}

impl MockServer {
    /// Starts a server on `127.0.0.1:0` whose phone has the number `phone` (digits).
    pub async fn start(phone: &str) -> Result<Self> {
        Self::start_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), phone).await
    }

    /// Starts a server on `addr` whose phone has the number `phone` (digits), and
    /// its media host on a free port of the same address.
    pub async fn start_on(addr: std::net::SocketAddr, phone: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let url = format!("ws://{}/ws/chat", listener.local_addr()?);
        let shared = Arc::new(Shared::new(phone.to_owned()));
        let media_listener = TcpListener::bind((addr.ip(), 0)).await?;
        let media = media::serve(Arc::clone(&shared), media_listener)?;
        let serving = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(conn::serve(Arc::clone(&serving), stream));
            }
        });
        Ok(Self {
            shared,
            url,
            accept,
            media,
        })
    }

    /// The WebSocket URL for `WA_SERVER_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first phone's number (digits): the one the server started with.
    pub fn phone_number(&self) -> String {
        self.shared.lock().phones[0].number.clone()
    }

    /// Adds the phone of another account, with the number `phone` (digits): its
    /// devices link, log in and send as the first phone's do, and what the server
    /// holds against an account (a time lock, a ban, a logout) holds against one
    /// phone only. The methods without a number act on the first phone.
    pub fn add_phone(&self, phone: &str) {
        let mut state = self.shared.lock();
        if state.phone_index(phone).is_none() {
            state
                .phones
                .push(crate::server::Phone::new(phone.to_owned()));
        }
    }

    /// The index of `phone`'s phone.
    fn phone(&self, phone: &str) -> Result<usize> {
        self.shared
            .lock()
            .phone_index(phone)
            .ok_or_else(|| Error::Phone(format!("the mock holds no phone {phone}")))
    }

    /// The first phone scans `code` (the string a client shows as its QR code): it
    /// answers the client that shows it with `pair-success` and a signed device
    /// identity.
    pub fn scan_qr(&self, code: &str) -> Result<()> {
        self.scan_qr_with(0, code)
    }

    /// `phone`'s phone scans `code`: the client showing it becomes a device of that
    /// account.
    pub fn scan_qr_as(&self, phone: &str, code: &str) -> Result<()> {
        self.scan_qr_with(self.phone(phone)?, code)
    }

    fn scan_qr_with(&self, phone: usize, code: &str) -> Result<()> {
        let qr = pairing::parse_qr(code)?;
        let mut state = self.shared.lock();
        let Some((id, _)) = state.connections.iter().find(|(_, c)| {
            c.device.is_none() && c.noise_key == qr.noise_key && c.refs.contains(&qr.pairing_ref)
        }) else {
            return Err(Error::Phone(
                "no connected client shows this QR code".into(),
            ));
        };
        let id = *id;
        self.shared.send_pair_success(&mut state, phone, id, &qr)
    }

    /// The user of the phone the code was asked for types `code`, the pair code a
    /// client shows after asking to be linked by phone number: the phone answers the
    /// newest such client with
    /// `primary_hello`; the client's `companion_finish` then gets `pair-success`. A
    /// wrong code is found out when the client's key bundle does not open.
    pub fn enter_pair_code(&self, code: &str) -> Result<()> {
        let (connection, wrapped, phone) = {
            let state = self.shared.lock();
            let hello = state
                .code_hellos
                .last()
                .ok_or_else(|| Error::Phone("no client asked for a pair code".into()))?;
            (
                hello.connection,
                hello.wrapped_ephemeral.clone(),
                hello.phone,
            )
        };
        // Key derivation takes a while (PBKDF2): not under the lock.
        let entry = pairing::enter_code(&wrapped, code)?;
        let mut state = self.shared.lock();
        let account = state.phones[phone]
            .account
            .public_key
            .public_key_bytes()
            .to_vec();
        let hello = state
            .code_hellos
            .iter_mut()
            .find(|h| h.connection == connection)
            .ok_or_else(|| Error::Phone("the client that asked for the code is gone".into()))?;
        let notification = NodeBuilder::new("notification")
            .attr("from", SERVER)
            .attr("type", "link_code_companion_reg")
            .attr("id", format!("mock-code-{}", hello.connection))
            .attr("t", now_secs())
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(entry.wrapped_primary_ephemeral.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub")
                        .bytes(account)
                        .build(),
                    NodeBuilder::new("link_code_pairing_ref")
                        .bytes(hello.pairing_ref.clone())
                        .build(),
                ])
                .build()])
            .build();
        hello.entry = Some(entry);
        state
            .connections
            .get(&connection)
            .ok_or(Error::Closed)?
            .tx
            .send(Outbound::Node(Box::new(notification)))
            .map_err(|_| Error::Closed)
    }

    /// Sends every client that is waiting to be linked a new `pair-device` request
    /// with fresh refs (as WhatsApp does when a pairing round is renewed): each shows
    /// a new QR code.
    pub fn refresh_pairing(&self) {
        let mut state = self.shared.lock();
        state.iq_counter += 1;
        let round = state.iq_counter;
        for (id, c) in state
            .connections
            .iter_mut()
            .filter(|(_, c)| c.device.is_none())
        {
            let refs: Vec<String> = (0..6)
                .map(|i| format!("mock-ref-{id}-{round}-{i}"))
                .collect();
            let request = NodeBuilder::new("iq")
                .attr("from", SERVER)
                .attr("type", "set")
                .attr("id", format!("mock-{round}-{id}"))
                .attr("xmlns", "md")
                .children([NodeBuilder::new("pair-device")
                    .children(
                        refs.iter()
                            .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()),
                    )
                    .build()])
                .build();
            c.refs.extend(refs);
            let _ = c.tx.send(Outbound::Node(Box::new(request)));
        }
    }

    /// How many devices are linked to the first phone.
    pub fn linked_devices(&self) -> usize {
        self.shared.lock().phones[0].devices.len()
    }

    /// How many devices are linked to `phone`'s phone.
    pub fn linked_devices_of(&self, phone: &str) -> Result<usize> {
        let i = self.phone(phone)?;
        Ok(self.shared.lock().phones[i].devices.len())
    }

    /// The pair-code steps the phone refused, each with its reason: a mistyped code
    /// shows here once the device sends its key bundle, which the phone cannot open.
    pub fn refused_pair_steps(&self) -> Vec<String> {
        self.shared.lock().refused_pair_steps.clone()
    }

    /// How many logins (`success`) the server granted, to every phone's devices.
    pub fn logins(&self) -> u64 {
        self.shared.lock().phones.iter().map(|p| p.logins).sum()
    }

    /// How many clients are connected and waiting to be linked (showing a QR code).
    pub fn waiting_for_scan(&self) -> usize {
        self.shared
            .lock()
            .connections
            .values()
            .filter(|c| c.device.is_none())
            .count()
    }

    /// The LID (digits) of a contact WhatsApp addresses by LID only.
    pub fn lid_of(&self, phone: &str) -> Option<String> {
        self.shared.lock().lid_only.get(phone).cloned()
    }

    /// Addresses a contact made with [`Self::add_lid_contact`] by its number again.
    pub fn address_by_number(&self, phone: &str) {
        self.shared.lock().lid_only.remove(phone);
    }

    /// How many clients are logged in right now.
    pub fn online(&self) -> usize {
        self.shared
            .lock()
            .connections
            .values()
            .filter(|c| c.device.is_some())
            .count()
    }

    /// The first phone unlinks every device ("log out" in Linked devices): each
    /// open session gets the stream error WhatsApp sends for a removed device.
    pub fn logout_from_phone(&self) {
        self.logout_with(0);
    }

    /// `phone`'s phone unlinks every device; the other phones' devices stay.
    pub fn logout_phone(&self, phone: &str) -> Result<()> {
        self.logout_with(self.phone(phone)?);
        Ok(())
    }

    fn logout_with(&self, phone: usize) {
        let mut state = self.shared.lock();
        state.phones[phone].devices.clear();
        for c in state
            .connections
            .values()
            .filter(|c| c.device.is_some() && c.phone == phone)
        {
            let error = NodeBuilder::new("stream:error")
                .attr("code", "401")
                .children([NodeBuilder::new("conflict")
                    .attr("type", "device_removed")
                    .build()])
                .build();
            let _ = c.tx.send(Outbound::Node(Box::new(error)));
            let _ = c.tx.send(Outbound::Close);
        }
        drop(state);
        self.shared.touch();
    }

    /// Another client took the session over: each open session is told it was
    /// replaced and closed.
    pub fn replace_stream(&self) {
        let state = self.shared.lock();
        for c in state.connections.values().filter(|c| c.device.is_some()) {
            let error = NodeBuilder::new("stream:error")
                .children([NodeBuilder::new("conflict")
                    .attr("type", "replaced")
                    .build()])
                .build();
            let _ = c.tx.send(Outbound::Node(Box::new(error)));
            let _ = c.tx.send(Outbound::Close);
        }
    }

    /// Bans the first phone's account for `duration`: its open sessions (and those
    /// still linking) are dropped and every login until then is refused with a
    /// temporary-ban failure.
    pub fn temporary_ban(&self, duration: Duration) {
        let mut state = self.shared.lock();
        state.phones[0].banned_until = Some(now_secs() + duration.as_secs().max(1));
        for c in state
            .connections
            .values()
            .filter(|c| c.device.is_none() || c.phone == 0)
        {
            let _ = c.tx.send(Outbound::Drop);
        }
    }

    /// Lifts a ban early.
    pub fn lift_ban(&self) {
        self.shared.lock().phones[0].banned_until = None;
    }

    /// The connections open now stop answering anything (no acks, no iq results),
    /// while staying open; connections opened later work normally. How a session
    /// looks that WhatsApp dropped on its side without closing the socket.
    pub fn stall(&self) {
        for c in self.shared.lock().connections.values_mut() {
            c.stalled = true;
        }
    }

    /// From now on (until called with `false`), every connection that logs in takes
    /// no message (no ack) and answers no ping, while it answers the other queries: a
    /// session that stays dead for sending however often the client reconnects.
    /// Connections open now are not changed (see [`Self::stall`]).
    pub fn ignore_sends(&self, on: bool) {
        self.shared.lock().ignore_sends = on;
    }

    /// Drops every TCP connection without a WebSocket close.
    pub fn drop_connections(&self) {
        for c in self.shared.lock().connections.values() {
            let _ = c.tx.send(Outbound::Drop);
        }
    }

    /// Makes `phone` (digits) a WhatsApp user whose Signal keys the mock holds.
    pub fn add_contact(&self, phone: &str) {
        self.shared
            .lock()
            .contacts
            .entry(phone.to_owned())
            .or_insert_with(signal::Contact::generate);
    }

    /// Makes `phone` (digits) a WhatsApp user that WhatsApp addresses by LID only, as
    /// it does more and more accounts: the number check gives its LID, its keys are
    /// served under the LID alone, only a message encrypted for the LID reaches it,
    /// and its receipts come from the LID. Answers the LID (digits).
    pub fn add_lid_contact(&self, phone: &str) -> String {
        let mut state = self.shared.lock();
        state
            .contacts
            .entry(phone.to_owned())
            .or_insert_with(signal::Contact::generate);
        if let Some(lid) = state.lid_only.get(phone) {
            return lid.clone();
        }
        state.lids_given += 1;
        let lid = (170_000_000_000_000u64 + state.lids_given).to_string();
        state.lid_only.insert(phone.to_owned(), lid.clone());
        lid
    }

    /// `phone`'s phone gives no Signal keys any more (its key queries get `404`, as
    /// for a device that is gone): no message can be encrypted for it.
    pub fn withhold_keys(&self, phone: &str) {
        self.shared.lock().keyless.insert(phone.to_owned());
    }

    /// Every message the mock decrypted, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// The media host's address (`127.0.0.1:<port>`), as the `media_conn` answer
    /// names it; uploads go to `https://` it.
    pub fn media_host(&self) -> String {
        self.shared.media.host()
    }

    /// The upload token the `media_conn` answer hands out now.
    pub fn media_auth(&self) -> String {
        self.shared.media.auth()
    }

    /// Replaces the upload token, as when WhatsApp's expires: an upload with the
    /// old one gets 401, after which the client asks for a new one and retries.
    pub fn expire_media_auth(&self) {
        self.shared.media.rotate_auth();
    }

    /// The next `count` uploads get `status` (a 503, say; a number that is no HTTP
    /// status gets 500) whatever they carry, and keep nothing; for tests of upload
    /// failures. A count of 0 ends such failures.
    pub fn fail_uploads(&self, status: u16, count: usize) {
        let status = axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        self.shared.media.fail_uploads(status, count);
        self.shared.touch();
    }

    /// Every upload the media host answered, refused ones included, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.shared.media.uploads()
    }

    /// Every media message a recipient could not open, in order: the server acked
    /// it, but the recipient got nothing.
    pub fn media_failures(&self) -> Vec<MediaFailure> {
        self.shared.media.failures()
    }

    /// Message ids the server accepted (acked without an error), in order.
    pub fn acked(&self) -> Vec<String> {
        self.shared
            .lock()
            .acks
            .iter()
            .filter(|a| a.error.is_none())
            .map(|a| a.message_id.clone())
            .collect()
    }

    /// Every ack and nack the server sent for a message, in order.
    pub fn acks(&self) -> Vec<Ack> {
        self.shared.lock().acks.clone()
    }

    /// Every message stanza the server got, in order, resends included.
    pub fn stanzas(&self) -> Vec<Stanza> {
        self.shared.lock().stanzas.clone()
    }

    /// Marks `phone` (digits) as a contact who never wrote to the first phone's
    /// account: under a reach-out time lock, messages to it are refused with 463.
    pub fn set_cold(&self, phone: &str) {
        self.shared.lock().phones[0].cold.insert(phone.to_owned());
    }

    /// Marks `contact` (digits) as one who never wrote to `phone`'s account.
    pub fn set_cold_for(&self, phone: &str, contact: &str) -> Result<()> {
        let i = self.phone(phone)?;
        self.shared.lock().phones[i].cold.insert(contact.to_owned());
        Ok(())
    }

    /// Puts the first phone's account under a reach-out time lock ending `ends_in`
    /// from now (whole seconds): messages to cold contacts get nack 463, and the
    /// time-lock query (`w:mex`) reports the lock and its end. Warm contacts are not
    /// affected.
    pub fn reach_out_time_lock(&self, ends_in: Duration) {
        self.shared.lock().phones[0].time_lock_until = Some(now_secs() + ends_in.as_secs().max(1));
    }

    /// Puts `phone`'s account under a reach-out time lock; the other accounts are
    /// not affected.
    pub fn reach_out_time_lock_of(&self, phone: &str, ends_in: Duration) -> Result<()> {
        let i = self.phone(phone)?;
        self.shared.lock().phones[i].time_lock_until = Some(now_secs() + ends_in.as_secs().max(1));
        Ok(())
    }

    /// Limits the new chats the account may open to `total` until `cycle` from now:
    /// a message to a cold contact (see [`Self::set_cold`]) not written to in this
    /// cycle counts one, and once `total` are used such messages get nack `475`. The
    /// new-chat capping query (`w:mex`) reports the quota, its use and the cycle's
    /// end. Warm contacts are not counted.
    pub fn new_chat_quota(&self, total: usize, cycle: Duration) {
        let now = now_secs();
        self.shared.lock().phones[0].quota = Some(crate::server::NewChatQuota {
            total,
            cycle_start: now,
            cycle_end: now + cycle.as_secs().max(1),
            opened: Default::default(),
        });
    }

    /// How many new chats the account opened in the quota's current cycle.
    pub fn new_chats_opened(&self) -> Option<usize> {
        self.shared.lock().phones[0]
            .current_quota()
            .map(|q| q.opened.len())
    }

    /// How the server answers messages to `phone` (digits) from now on.
    pub fn set_behaviour(&self, phone: &str, behaviour: AckBehaviour) {
        self.shared
            .lock()
            .behaviours
            .insert(phone.to_owned(), behaviour);
    }

    /// `phone`'s phone sends a receipt for `message_id` to the linked devices (from
    /// its LID when WhatsApp addresses it by LID).
    pub fn send_receipt(&self, phone: &str, message_id: &str, kind: ReceiptKind) -> Result<()> {
        self.shared.send_receipt(phone, message_id, kind)
    }

    /// Whether recipients' phones confirm each delivered message by themselves, a
    /// moment after the server's ack (the standalone mock); off by default, so tests
    /// decide when a receipt comes.
    pub fn set_auto_receipts(&self, on: bool) {
        self.shared.lock().auto_receipts = on;
    }

    /// Turns `phone`'s phone off or on: while off, with automatic receipts, the
    /// server still acks its messages but their delivery receipts wait until
    /// [`Self::release_receipts`].
    pub fn set_offline(&self, phone: &str, offline: bool) {
        let mut state = self.shared.lock();
        if offline {
            state.offline.insert(phone.to_owned());
        } else {
            state.offline.remove(phone);
        }
    }

    /// Sends the delivery receipts `phone`'s phone held while offline; answers how many.
    pub fn release_receipts(&self, phone: &str) -> Result<usize> {
        let held: Vec<String> = {
            let mut state = self.shared.lock();
            let (mine, others) = std::mem::take(&mut state.held_receipts)
                .into_iter()
                .partition(|(to, _)| to == phone);
            state.held_receipts = others;
            mine.into_iter().map(|(_, id)| id).collect()
        };
        for id in &held {
            self.send_receipt(phone, id, ReceiptKind::Delivered)?;
        }
        Ok(held.len())
    }

    /// Each recipient the mock knows, with how the server treats it.
    pub fn recipients(&self) -> Vec<Recipient> {
        let state = self.shared.lock();
        state
            .contacts
            .keys()
            .map(|number| Recipient {
                number: number.clone(),
                lid: state.lid_only.get(number).cloned(),
                behaviour: state.behaviours.get(number).cloned().unwrap_or_default(),
                cold: state.phones[0].cold.contains(number),
                offline: state.offline.contains(number),
                held_receipts: state
                    .held_receipts
                    .iter()
                    .filter(|(to, _)| to == number)
                    .count(),
            })
            .collect()
    }

    /// When the reach-out time lock ends (secs since the epoch), while one lasts.
    pub fn time_lock_until(&self) -> Option<u64> {
        self.shared.lock().phones[0]
            .time_lock_until
            .filter(|t| *t > now_secs())
    }

    /// Lifts the reach-out time lock early.
    pub fn lift_time_lock(&self) {
        self.shared.lock().phones[0].time_lock_until = None;
    }

    /// Marks `phone` (digits) as a contact who wrote to the account (undoes `set_cold`).
    pub fn set_warm(&self, phone: &str) {
        self.shared.lock().phones[0].cold.remove(phone);
    }

    /// Waits until `condition` holds, for at most `limit`; answers whether it did.
    pub async fn wait_for(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> bool {
        let mut changes = self.shared.subscribe();
        let wait = async {
            loop {
                if condition(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok() && condition(self)
    }
}
