//! The real messenger (`whatsapp-rust`) against the mock WhatsApp Web server of
//! `abtrack-wa-mock`: linking by QR code, logging in, sending end-to-end encrypted
//! text that the mock decrypts, receipts, and the server's own events.

use std::path::Path;
use std::time::Duration;

use tokio::sync::broadcast;

use abtrack_proto::Jid;
use abtrack_wa_gateway::messenger::{
    ConnectionState, Messenger, MessengerEvent, Outgoing, ReceiptKind, Status,
};
use abtrack_wa_gateway::whatsapp::{WhatsAppMessenger, WhatsAppSettings};
use abtrack_wa_mock::MockServer;

/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(60);
pub const PHONE: &str = "6281100000001";

pub fn settings(mock: &MockServer, data_dir: &Path) -> WhatsAppSettings {
    WhatsAppSettings {
        data_dir: data_dir.to_owned(),
        server_url: Some(mock.url().to_owned()),
        client_version: Some((2, 3000, 1)),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
        server_ack_timeout: Duration::from_secs(2),
        print_qr: false,
    }
}

/// Waits until the messenger's state satisfies `check`; answers that state.
pub async fn wait_state(
    messenger: &WhatsAppMessenger,
    what: &str,
    check: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    let mut states = messenger.state();
    let wait = async {
        loop {
            let current = states.borrow_and_update().clone();
            if check(&current) {
                return current;
            }
            states.changed().await.expect("the messenger stopped");
        }
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(state) => state,
        Err(_) => panic!(
            "timed out waiting for {what}; state is {:?}",
            messenger.state().borrow()
        ),
    }
}

/// The next QR code the messenger shows.
pub async fn next_qr(events: &mut broadcast::Receiver<MessengerEvent>) -> String {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(MessengerEvent::Qr { code, .. }) => return code,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the messenger stopped"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("timed out waiting for a QR code")
}

/// The next receipt the messenger reports.
async fn next_receipt(events: &mut broadcast::Receiver<MessengerEvent>) -> (String, ReceiptKind) {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(MessengerEvent::Receipt {
                    message_id, kind, ..
                }) => return (message_id, kind),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the messenger stopped"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("timed out waiting for a receipt")
}

fn connected(state: &ConnectionState) -> bool {
    state.status == Status::Connected
}

/// Starts a messenger on a fresh data folder and links it by scanning its QR code.
async fn linked(mock: &MockServer, data: &Path) -> WhatsAppMessenger {
    let messenger = WhatsAppMessenger::start(settings(mock, data), &Default::default());
    let mut events = messenger.events();
    let code = next_qr(&mut events).await;
    mock.scan_qr(&code)
        .expect("the mock phone scans the QR code");
    let state = wait_state(&messenger, "connected after the scan", connected).await;
    assert_eq!(state.own_number, PHONE);
    messenger
}

fn outgoing(n: usize, to: &str, text: &str) -> Outgoing {
    Outgoing {
        new_chat: false,
        media: None,
        job_id: format!("job-{n}"),
        message_id: format!("3EB0MOCK{n:08}"),
        to: Jid::User(to.to_owned()),
        text: text.to_owned(),
    }
}

#[tokio::test]
async fn links_by_qr_then_logs_in_again_after_a_restart_without_a_scan() {
    let mock = MockServer::start(PHONE).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let messenger = linked(&mock, data.path()).await;
    assert_eq!(mock.linked_devices(), 1);
    let logins = mock.logins();
    messenger.shutdown().await;
    drop(messenger);

    let again = WhatsAppMessenger::start(settings(&mock, data.path()), &Default::default());
    let mut events = again.events();
    wait_state(&again, "connected with the stored session", connected).await;
    assert_eq!(mock.logins(), logins + 1);
    assert_eq!(mock.linked_devices(), 1);
    assert!(
        events.try_recv().is_err(),
        "a linked gateway shows no QR code"
    );
    again.shutdown().await;
}

#[tokio::test]
async fn sends_exact_texts_gets_receipts_and_reports_unknown_numbers() {
    let mock = MockServer::start(PHONE).await.unwrap();
    let alice = "6281200000002";
    let bob = "6281300000003";
    mock.add_contact(alice);
    mock.add_contact(bob);
    let data = tempfile::tempdir().unwrap();
    let messenger = linked(&mock, data.path()).await;
    let mut events = messenger.events();

    assert!(
        messenger
            .is_on_whatsapp(&Jid::User(alice.into()))
            .await
            .unwrap()
            .on_whatsapp
    );
    assert!(
        !messenger
            .is_on_whatsapp(&Jid::User("6289900000009".into()))
            .await
            .unwrap()
            .on_whatsapp
    );

    let first = outgoing(1, alice, "Ananda hadir 07:01 ✅");
    let second = outgoing(2, alice, "second message, same session");
    let third = outgoing(3, bob, "Bob's line\nwith two lines");
    for message in [&first, &second, &third] {
        messenger.send(message).await.unwrap();
    }
    assert!(
        mock.wait_for(WAIT, |m| m.received().len() == 3).await,
        "the mock decrypted {:?}",
        mock.received()
    );
    let got: Vec<(String, String, String)> = mock
        .received()
        .into_iter()
        .map(|r| (r.to, r.message_id, r.text))
        .collect();
    let want: Vec<(String, String, String)> = [&first, &second, &third]
        .iter()
        .map(|m| (m.to.user().to_owned(), m.message_id.clone(), m.text.clone()))
        .collect();
    assert_eq!(got, want);

    mock.send_receipt(
        alice,
        &first.message_id,
        abtrack_wa_mock::ReceiptKind::Delivered,
    )
    .unwrap();
    assert_eq!(
        next_receipt(&mut events).await,
        (first.message_id.clone(), ReceiptKind::Delivered)
    );
    mock.send_receipt(alice, &first.message_id, abtrack_wa_mock::ReceiptKind::Read)
        .unwrap();
    assert_eq!(
        next_receipt(&mut events).await,
        (first.message_id.clone(), ReceiptKind::Read)
    );
    messenger.shutdown().await;
}

#[tokio::test]
async fn logout_from_the_phone_keeps_the_old_session_aside_and_shows_a_fresh_qr() {
    let mock = MockServer::start(PHONE).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let messenger = linked(&mock, data.path()).await;
    let mut events = messenger.events();
    mock.logout_from_phone();
    let code = next_qr(&mut events).await;
    wait_state(&messenger, "waiting for a QR code", |s| {
        s.status == Status::WaitingForQr
    })
    .await;
    let old: Vec<_> = std::fs::read_dir(data.path().join("old-sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(old.len(), 1, "{old:?}");
    assert!(old[0].join("whatsapp.sqlite3").exists());
    let err = messenger
        .send(&outgoing(1, "6281200000002", "waits"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, abtrack_wa_gateway::Error::NotLinked(_)),
        "{err:?}"
    );

    mock.scan_qr(&code).unwrap();
    wait_state(&messenger, "connected after the new scan", connected).await;
    assert_eq!(mock.linked_devices(), 1);
    messenger.shutdown().await;
}

#[tokio::test]
async fn server_events_replaced_banned_and_dropped() {
    let mock = MockServer::start(PHONE).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let messenger = linked(&mock, data.path()).await;

    let logins = mock.logins();
    mock.drop_connections();
    wait_state(
        &messenger,
        "connected again after a dropped connection",
        |s| connected(s) && mock.logins() > logins,
    )
    .await;

    mock.replace_stream();
    wait_state(&messenger, "replaced", |s| s.status == Status::Replaced).await;
    // The gateway tries again after its (short, in this test) backoff.
    wait_state(&messenger, "connected after being replaced", connected).await;

    mock.temporary_ban(Duration::from_secs(3600));
    let banned = wait_state(&messenger, "banned", |s| s.status == Status::Banned).await;
    let until = banned.banned_until.expect("a ban carries its end");
    let expected = abtrack_proto::time::now_ms() + 3_600_000;
    assert!((until - expected).abs() < 120_000, "{until} vs {expected}");
    assert!(
        data.path().join("session").exists(),
        "a ban keeps the session"
    );
    messenger.shutdown().await;
}
