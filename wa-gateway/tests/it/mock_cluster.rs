//! The four services as processes, the gateway in its real mode (`whatsapp-rust`)
//! pointed at the mock WhatsApp Web server with `WA_SERVER_URL`: linking from the
//! dashboard, fifty jobs to their exact recipients with receipts, a number that is
//! not on WhatsApp, a logout from the phone, and a gateway restart; two accounts,
//! each its own gateway linked to its own phone of the mock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use abtrack_e2e::Cluster;
use abtrack_wa_mock::{MockServer, ReceiptKind};

use crate::mock_whatsapp::PHONE;

const WAIT: Duration = Duration::from_secs(90);
const RECIPIENTS: [&str; 5] = [
    "6281200000011",
    "6281200000012",
    "6281200000013",
    "6281200000014",
    "6281200000015",
];

fn count(status: &Value, name: &str) -> u64 {
    status["queue"]["counts"][name].as_u64().unwrap_or(0)
}

/// Has the mock renew the pairing round and answers the QR code the gateway then
/// publishes (the code the dashboard draws).
pub async fn fresh_qr(cluster: &Cluster, mock: &MockServer) -> String {
    fresh_qr_at(cluster.ports["wa-gateway"], mock).await
}

/// [`fresh_qr`] of the gateway serving on `port`.
async fn fresh_qr_at(port: u16, mock: &MockServer) -> String {
    abtrack_e2e::bench::accounts::fresh_qr(port, mock).await
}

/// The four services with the gateway on `mock` (`extra` on top), linked by
/// scanning the QR code the dashboard shows, and connected.
pub async fn linked_cluster(mock: &MockServer, extra: &[(&str, &str)]) -> Cluster {
    let cluster = Cluster::start_unlinked(&on_the_mock(mock.url(), extra)).await;
    let code = fresh_qr(&cluster, mock).await;
    mock.scan_qr(&code).unwrap();
    cluster
        .wait_status(WAIT, "the gateway to connect", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;
    cluster
}

/// Enqueues through the REST API; local numbers (`08…`) as users type them.
pub async fn enqueue(cluster: &Cluster, to: &str, message: &str) -> String {
    let local = format!("0{}", &to[2..]);
    let (code, job) = cluster
        .post(
            "/api/messages",
            json!({ "to": local, "message": message }).to_string(),
        )
        .await;
    assert_eq!(code, 201, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// A job as the REST API shows it.
pub async fn job(cluster: &Cluster, id: &str) -> Value {
    cluster.get(&format!("/api/jobs/{id}")).await
}

/// Polls the job until `done` holds (at most `WAIT`); answers it.
pub async fn wait_job(
    cluster: &Cluster,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let job = job(cluster, id).await;
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The texts the mock decrypted, per recipient, with how often each arrived.
fn decrypted(mock: &MockServer) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for r in mock.received() {
        *seen.entry((r.to, r.text)).or_insert(0) += 1;
    }
    seen
}

/// The gateway in WhatsApp mode on the mock at `url`, reconnecting quickly, with
/// `extra` on top.
pub fn on_the_mock<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("WA_MODE", "whatsapp"),
        ("WA_SERVER_URL", url),
        ("WA_CLIENT_VERSION", "2.3000.1"),
        ("WA_PRINT_QR", "false"),
        ("WA_RECONNECT_MIN_MS", "100"),
        ("WA_RECONNECT_MAX_MS", "1000"),
    ];
    env.extend_from_slice(extra);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_jobs_through_the_real_client_then_logout_rescan_and_restart() {
    let mock = MockServer::start(PHONE).await.unwrap();
    for r in RECIPIENTS {
        mock.add_contact(r);
    }
    let mut cluster = Cluster::start_unlinked(&on_the_mock(mock.url(), &[])).await;

    // Linking: the dashboard shows a QR code, the phone scans it.
    let code = fresh_qr(&cluster, &mock).await;
    let status = cluster
        .wait_status(WAIT, "the dashboard to show a QR code", |s| {
            s["gateway"]["qrAvailable"] == true
        })
        .await;
    assert_eq!(status["gateway"]["status"], "waiting_for_qr");
    mock.scan_qr(&code).unwrap();
    cluster
        .wait_status(WAIT, "the gateway to connect", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;

    // Fifty jobs: sent, each text decrypted once by the right recipient.
    let mut expected = BTreeMap::new();
    for n in 0..50 {
        let to = RECIPIENTS[n % RECIPIENTS.len()];
        let text = format!("Ananda {n} hadir pukul 07:{:02} ✅", n % 60);
        enqueue(&cluster, to, &text).await;
        expected.insert((to.to_owned(), text), 1);
    }
    cluster
        .wait_status(WAIT, "50 sent jobs", |s| count(s, "sent") == 50)
        .await;
    assert!(mock.wait_for(WAIT, |m| m.received().len() >= 50).await);
    assert_eq!(decrypted(&mock), expected);
    assert_eq!(mock.received().len(), 50);

    // Receipts from the recipients' phones: delivered, then read.
    for r in mock.received() {
        mock.send_receipt(&r.to, &r.message_id, ReceiptKind::Delivered)
            .unwrap();
    }
    cluster
        .wait_status(WAIT, "50 delivered jobs", |s| count(s, "delivered") == 50)
        .await;
    for r in mock.received() {
        mock.send_receipt(&r.to, &r.message_id, ReceiptKind::Read)
            .unwrap();
    }
    let status = cluster
        .wait_status(WAIT, "50 read jobs", |s| count(s, "read") == 50)
        .await;
    assert_eq!(count(&status, "failed"), 0);

    // A number the mock does not know.
    let unknown = enqueue(&cluster, "6289900000099", "tidak terkirim").await;
    cluster
        .wait_status(WAIT, "the unknown number to fail", |s| {
            count(s, "failed") == 1
        })
        .await;
    let job = cluster.get(&format!("/api/jobs/{unknown}")).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["lastError"]["code"], "not_on_whatsapp", "{job}");

    // Logout from the phone: the old session is kept aside, a fresh QR code is
    // shown, the queue waits, and after a new scan the rest goes out.
    mock.logout_from_phone();
    cluster
        .wait_status(WAIT, "a fresh QR code after the logout", |s| {
            s["gateway"]["status"] == "waiting_for_qr" && s["gateway"]["qrAvailable"] == true
        })
        .await;
    let old = cluster.dir.path().join("data/wa-gateway/old-sessions");
    assert_eq!(std::fs::read_dir(&old).unwrap().count(), 1);
    let mut rest = BTreeMap::new();
    for (n, to) in RECIPIENTS.iter().enumerate() {
        let text = format!("after the rescan {n}");
        enqueue(&cluster, to, &text).await;
        rest.insert(((*to).to_owned(), text), 1);
    }
    let status = cluster
        .wait_status(WAIT, "the five new jobs to wait", |s| {
            count(s, "pending") + count(s, "processing") == 5
        })
        .await;
    assert_eq!(count(&status, "read"), 50);
    assert_eq!(mock.received().len(), 50, "nothing leaves while unlinked");
    let code = fresh_qr(&cluster, &mock).await;
    mock.scan_qr(&code).unwrap();
    cluster
        .wait_status(WAIT, "the rest sent after the rescan", |s| {
            count(s, "sent") == 5
        })
        .await;
    assert!(mock.wait_for(WAIT, |m| m.received().len() >= 55).await);
    expected.extend(rest);
    assert_eq!(decrypted(&mock), expected);

    // A restart after linking logs in again without a scan.
    let logins = mock.logins();
    cluster.kill("wa-gateway");
    cluster.spawn("wa-gateway");
    cluster.wait_serving("wa-gateway").await;
    cluster
        .wait_status(WAIT, "connected again after the restart", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;
    assert_eq!(mock.logins(), logins + 1);
    assert_eq!(mock.linked_devices(), 1);
}

/// The job's row in the gateway's send log: (message id, sent_at).
pub fn send_log_entry(cluster: &Cluster, job_id: &str) -> Option<(String, Option<i64>)> {
    let path = cluster.dir.path().join("data/wa-gateway/sends.sqlite3");
    let conn = rusqlite::Connection::open(path).ok()?;
    conn.query_row(
        "SELECT message_id, sent_at FROM sends WHERE job_id = ?1",
        [job_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_after_the_ack_and_before_the_dispatcher_recorded_sends_once() {
    const TO: &str = "6281200000021";
    const TEXT: &str = "Ananda tiba di sekolah pukul 07:02 ✅";
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(TO);
    // The gateway waits ten minutes between recording a send and answering it, and
    // the dispatcher waits as long for the answer: the job is still `processing`
    // when the kill below lands.
    let mut cluster = linked_cluster(
        &mock,
        &[
            ("WA_ANSWER_DELAY_MS", "600000"),
            ("DISPATCHER_SEND_TIMEOUT_SECS", "600"),
            ("DISPATCHER_LEASE_SECS", "900"),
            ("DISPATCHER_BACKOFF_BASE_SECS", "1"),
            ("DISPATCHER_BACKOFF_MAX_SECS", "2"),
        ],
    )
    .await;

    let job_id = enqueue(&cluster, TO, TEXT).await;
    // The mock decrypted and acked the text, and the gateway recorded it as sent.
    assert!(
        mock.wait_for(WAIT, |m| m.received().iter().any(|r| r.text == TEXT))
            .await,
        "the text never reached the mock"
    );
    let first_id = mock
        .received()
        .into_iter()
        .find(|r| r.text == TEXT)
        .unwrap()
        .message_id;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match send_log_entry(&cluster, &job_id) {
            Some((id, Some(_))) => {
                assert_eq!(id, first_id);
                break;
            }
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "the send log never marked the job sent: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The dispatcher has no answer yet: the job is still in flight.
    let job = cluster.get(&format!("/api/jobs/{job_id}")).await;
    assert_eq!(job["status"], "processing", "{job}");
    assert_eq!(job["messageId"], "", "{job}");

    cluster.kill("wa-gateway");
    cluster.set_env("WA_ANSWER_DELAY_MS", "0");
    cluster.spawn("wa-gateway");
    cluster.wait_serving("wa-gateway").await;
    cluster
        .wait_status(WAIT, "the job sent after the restart", |s| {
            count(s, "sent") == 1
        })
        .await;
    let job = cluster.get(&format!("/api/jobs/{job_id}")).await;
    assert_eq!(job["status"], "sent", "{job}");
    assert_eq!(job["messageId"], first_id.as_str(), "{job}");
    // The retry was answered from the send log: nothing left the gateway again.
    let copies: Vec<_> = mock
        .received()
        .into_iter()
        .filter(|r| r.text == TEXT)
        .collect();
    assert_eq!(copies.len(), 1, "the mock saw the text once");
    assert_eq!(mock.received().len(), 1);
    assert_eq!(
        mock.acked().iter().filter(|id| **id == first_id).count(),
        1,
        "the message was acked once"
    );
    assert!(
        cluster
            .log("wa-gateway")
            .contains("job already sent, answering with its message id"),
        "the restarted gateway answered from its send log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_by_pair_code_from_the_dashboard() {
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(RECIPIENTS[0]);
    let cluster = Cluster::start_unlinked(&on_the_mock(mock.url(), &[])).await;
    cluster
        .wait_status(WAIT, "the gateway to wait for a link", |s| {
            s["gateway"]["status"] == "waiting_for_qr"
        })
        .await;

    // "Link with phone number": the dashboard shows a code, the phone's user types it.
    let local = format!("0{}", &PHONE[2..]);
    let dashboard_code = async || {
        let body = json!({ "phone": local }).to_string();
        let (code, answer) = cluster.post("/api/gateway/pair-code", body).await;
        assert_eq!(code, 200, "{answer}");
        answer["code"].as_str().unwrap().to_owned()
    };
    let pair_code = dashboard_code().await;
    assert_eq!(pair_code.replace('-', "").len(), 8, "{pair_code}");

    // A mistyped code links nothing.
    let wrong: String = pair_code
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    mock.enter_pair_code(&wrong).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while mock.refused_pair_steps().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the phone never saw the device's answer to the mistyped code"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        mock.refused_pair_steps()[0].contains("companion_finish"),
        "{:?}",
        mock.refused_pair_steps()
    );
    assert_eq!(mock.linked_devices(), 0);

    // The right one links the gateway, which then sends.
    mock.enter_pair_code(&dashboard_code().await).unwrap();
    cluster
        .wait_status(WAIT, "the gateway to connect", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;
    assert_eq!(mock.linked_devices(), 1);
    let id = enqueue(&cluster, RECIPIENTS[0], "tertaut dengan kode").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !mock
        .received()
        .iter()
        .any(|r| r.text == "tertaut dengan kode")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} not received"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The second account's phone, gateway (as the cluster names it) and data folder.
const SECOND_PHONE: &str = "6281100000002";
const SECOND_GATEWAY: &str = "wa-gateway-smp-2";
/// Its data folder, where [`Cluster::spawn_gateway`] puts it.
const SECOND_DATA: &str = "data/wa-gateway/smp-2";

/// Enqueues a job for `account` (`None`: the default account).
async fn enqueue_for(cluster: &Cluster, to: &str, message: &str, account: Option<&str>) -> String {
    let local = format!("0{}", &to[2..]);
    let mut body = json!({ "to": local, "message": message });
    if let Some(account) = account {
        body["account"] = json!(account);
    }
    let (code, job) = cluster.post("/api/messages", body.to_string()).await;
    assert_eq!(code, 201, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// The job's status, as the REST API shows it.
async fn status_of(cluster: &Cluster, id: &str) -> String {
    job(cluster, id).await["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_send_from_their_own_numbers_and_a_logged_out_one_waits_for_its_rescan() {
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_phone(SECOND_PHONE);
    for r in RECIPIENTS {
        mock.add_contact(r);
    }
    let mut cluster = linked_cluster(&mock, &[("WA_ACCOUNT", "sd-harapan")]).await;

    // The second account's gateway on the same server, linked by the second phone.
    let port = cluster.spawn_gateway(SECOND_GATEWAY, "smp-2");
    cluster.wait_serving(SECOND_GATEWAY).await;
    let code = fresh_qr_at(port, &mock).await;
    mock.scan_qr_as(SECOND_PHONE, &code).unwrap();
    assert!(
        mock.wait_for(WAIT, |m| {
            m.linked_devices_of(SECOND_PHONE).unwrap() == 1 && m.online() == 2
        })
        .await
    );
    assert_eq!(mock.linked_devices(), 1, "each phone links its own device");

    // The dispatcher sends for both.
    let accounts = format!(
        "sd-harapan=http://127.0.0.1:{},smp-2=http://127.0.0.1:{port}",
        cluster.ports["wa-gateway"]
    );
    cluster.give_accounts("dispatcher", &accounts).await;
    cluster
        .wait_status(WAIT, "both accounts ready", |s| {
            s["queue"]["gatewayReady"] == true
        })
        .await;

    // 100 jobs split between them, to five recipients: each from its own number.
    let mut expected = BTreeMap::new();
    for n in 0..100 {
        let to = RECIPIENTS[n % RECIPIENTS.len()];
        let (account, from) = if n % 2 == 0 {
            (None, PHONE)
        } else {
            (Some("smp-2"), SECOND_PHONE)
        };
        let text = format!("split {n}");
        enqueue_for(&cluster, to, &text, account).await;
        expected.insert((from.to_owned(), to.to_owned(), text), 1);
    }
    cluster
        .wait_status(WAIT, "100 sent jobs", |s| count(s, "sent") == 100)
        .await;
    assert!(mock.wait_for(WAIT, |m| m.received().len() >= 100).await);
    let by_sender = |mock: &MockServer| {
        let mut seen = BTreeMap::new();
        for r in mock.received() {
            *seen.entry((r.from, r.to, r.text)).or_insert(0) += 1;
        }
        seen
    };
    assert_eq!(by_sender(&mock), expected);

    // The second phone logs its device out: its jobs wait, the first account's go on.
    mock.logout_phone(SECOND_PHONE).unwrap();
    cluster
        .wait_status(WAIT, "smp-2 to wait", |s| {
            s["queue"]["waitingReason"]
                .as_str()
                .is_some_and(|r| r.starts_with("smp-2: "))
        })
        .await;
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (n, to) in RECIPIENTS.iter().enumerate() {
        let text = format!("while logged out {n}");
        second.push(enqueue_for(&cluster, to, &text, Some("smp-2")).await);
        expected.insert((SECOND_PHONE.to_owned(), (*to).to_owned(), text.clone()), 1);
        let text = format!("meanwhile {n}");
        first.push(enqueue_for(&cluster, to, &text, Some("sd-harapan")).await);
        expected.insert((PHONE.to_owned(), (*to).to_owned(), text), 1);
    }
    for id in &first {
        wait_job(&cluster, id, "the first account's job", |j| {
            j["status"] == "sent"
        })
        .await;
    }
    for id in &second {
        assert_eq!(status_of(&cluster, id).await, "pending", "{id}");
    }
    assert_eq!(
        mock.received().len(),
        105,
        "nothing leaves the logged-out account"
    );

    // Rescanned: its jobs go out, from its own number.
    let code = fresh_qr_at(port, &mock).await;
    mock.scan_qr_as(SECOND_PHONE, &code).unwrap();
    for id in &second {
        wait_job(
            &cluster,
            id,
            "the second account's job after its rescan",
            |j| j["status"] == "sent",
        )
        .await;
    }
    assert!(mock.wait_for(WAIT, |m| m.received().len() >= 110).await);
    assert_eq!(by_sender(&mock), expected);
    let old = cluster.dir.path().join(SECOND_DATA).join("old-sessions");
    assert_eq!(std::fs::read_dir(&old).unwrap().count(), 1);
    assert!(
        !cluster
            .dir
            .path()
            .join("data/wa-gateway/old-sessions")
            .exists(),
        "the first account's session was never touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_account_installation_names_its_accounts_without_a_rescan_or_a_lost_job() {
    let firestore = abtrack_firestore_emulator::TestFirestore::from_env();
    let collection = format!("upgrade-{}", uuid::Uuid::new_v4().simple());
    let mock = MockServer::start(PHONE).await.unwrap();
    for r in RECIPIENTS {
        mock.add_contact(r);
    }
    let queue = [
        ("QUEUE", "firestore"),
        ("FIRESTORE_EMULATOR_HOST", firestore.host.as_str()),
        ("FIRESTORE_COLLECTION", collection.as_str()),
    ];
    // Before: one account, named nothing, its session in data/wa-gateway.
    let mut cluster = linked_cluster(&mock, &queue).await;
    let app = abtrack_e2e::firestore_app::App::connect(&firestore.host, &collection).await;
    let local = |to: &str| format!("0{}", &to[2..]);
    for (n, to) in RECIPIENTS.iter().enumerate() {
        app.write_job(&format!("before-{n}"), &local(to), &format!("before {n}"))
            .await;
    }
    for n in 0..RECIPIENTS.len() {
        wait_job(
            &cluster,
            &format!("before-{n}"),
            "a job before the upgrade",
            |j| j["status"] == "sent",
        )
        .await;
    }
    // Stopped for the upgrade, while the app goes on writing jobs (naming no account).
    cluster.stop("dispatcher");
    cluster.stop("wa-gateway");
    for (n, to) in RECIPIENTS.iter().enumerate() {
        app.write_job(&format!("after-{n}"), &local(to), &format!("after {n}"))
            .await;
    }
    let logins = mock.logins();

    // After: the same data folder and collection, the accounts named.
    cluster.set_env("WA_ACCOUNT", "sd-harapan");
    cluster.spawn("wa-gateway");
    let accounts = format!(
        "sd-harapan=http://127.0.0.1:{},smp-2=http://127.0.0.1:{}",
        cluster.ports["wa-gateway"],
        abtrack_e2e::free_port()
    );
    cluster.give_accounts("dispatcher", &accounts).await;
    cluster.wait_serving("wa-gateway").await;
    for n in 0..RECIPIENTS.len() {
        wait_job(
            &cluster,
            &format!("after-{n}"),
            "a job written during the upgrade",
            |j| j["status"] == "sent",
        )
        .await;
    }
    // No rescan: the same linked device logged in again with its session.
    assert_eq!(mock.linked_devices(), 1);
    assert!(mock.logins() > logins);
    assert!(
        !cluster
            .dir
            .path()
            .join("data/wa-gateway/old-sessions")
            .exists(),
        "no session was moved aside"
    );
    let status = cluster
        .wait_status(WAIT, "the upgraded gateway connected", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;
    assert_eq!(status["gateway"]["qrAvailable"], false);
    // Every job once, from the one number it always had.
    assert!(mock.wait_for(WAIT, |m| m.received().len() >= 10).await);
    let mut texts: Vec<(String, String)> = mock
        .received()
        .into_iter()
        .map(|r| (r.from, r.text))
        .collect();
    texts.sort();
    let mut expected: Vec<(String, String)> = (0..RECIPIENTS.len())
        .flat_map(|n| [format!("after {n}"), format!("before {n}")])
        .map(|text| (PHONE.to_owned(), text))
        .collect();
    expected.sort();
    assert_eq!(texts, expected);
}
