//! The server's answer decides: the four services as processes, the gateway's real
//! client on the mock WhatsApp Web server. A job is `sent` only once the server
//! acked its message, stays `processing` while the ack is slow, ends `failed` with
//! WhatsApp's code on a nack, and after no ack at all (and one resend under the
//! same message id) ends `failed` with `no_server_ack`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use abtrack_e2e::Cluster;
use abtrack_proto::time::parse_rfc3339;
use abtrack_wa_mock::{AckBehaviour, MockServer, ReceiptKind};

use crate::mock_cluster::{enqueue, job, linked_cluster, send_log_entry, wait_job};
use crate::mock_whatsapp::PHONE;

const WAIT: Duration = Duration::from_secs(90);
const WARM: [&str; 5] = [
    "6281200000041",
    "6281200000042",
    "6281200000043",
    "6281200000044",
    "6281200000045",
];
const SLOW: &str = "6281200000051";
const REFUSING: &str = "6281200000052";
const SILENT: &str = "6281200000053";

/// Waits until the job waits, held back by WhatsApp or the gateway with `code`: no
/// attempt spent and its next attempt at `until` (within a second); answers it.
async fn wait_held(cluster: &Cluster, id: &str, what: &str, code: &str, until: i64) -> Value {
    let job = wait_job(cluster, id, what, |j| {
        j["status"] == "pending" && j["lastError"]["code"] == code
    })
    .await;
    assert_eq!(job["attempts"], 0, "{job}");
    let next = parse_rfc3339(job["nextAttemptAt"].as_str().unwrap()).unwrap();
    assert!(
        (next - until).abs() <= 1_000,
        "next attempt {next}, expected {until}: {job}"
    );
    job
}

/// When the mock sent the ack (without an error) of `message_id`.
pub fn ack_at(mock: &MockServer, message_id: &str) -> Option<i64> {
    mock.acks()
        .into_iter()
        .find(|a| a.message_id == message_id && a.error.is_none())
        .map(|a| a.at_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_sent_only_once_the_server_acked_it() {
    let mock = MockServer::start(PHONE).await.unwrap();
    for r in WARM.iter().chain(&[SLOW, REFUSING, SILENT]) {
        mock.add_contact(r);
    }
    let cluster = linked_cluster(&mock, &[("WA_SERVER_ACK_TIMEOUT_MS", "5000")]).await;

    // Fifty jobs to known recipients: each `sentAt` is not before the server's ack.
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(enqueue(&cluster, WARM[n % WARM.len()], &format!("Ananda {n} hadir")).await);
    }
    for id in &ids {
        let job = wait_job(&cluster, id, "a sent job", |j| j["status"] == "sent").await;
        let message_id = job["messageId"].as_str().unwrap();
        let sent_at = parse_rfc3339(job["sentAt"].as_str().unwrap()).unwrap();
        let acked = ack_at(&mock, message_id).unwrap_or_else(|| panic!("no ack for {job}"));
        assert!(
            sent_at >= acked,
            "sentAt {sent_at} before the ack at {acked}: {job}"
        );
    }

    // A slow ack: the recipient has the text, the job stays `processing` until the ack.
    mock.set_behaviour(SLOW, AckBehaviour::Slow(Duration::from_secs(3)));
    let slow = enqueue(&cluster, SLOW, "pelan").await;
    assert!(
        mock.wait_for(WAIT, |m| m.received().iter().any(|r| r.to == SLOW))
            .await
    );
    let received_at = abtrack_proto::time::now_ms();
    let pending = job(&cluster, &slow).await;
    assert_eq!(pending["status"], "processing", "{pending}");
    let sent = wait_job(&cluster, &slow, "the slow job sent", |j| {
        j["status"] == "sent"
    })
    .await;
    let message_id = sent["messageId"].as_str().unwrap();
    let acked = ack_at(&mock, message_id).expect("the slow ack");
    let sent_at = parse_rfc3339(sent["sentAt"].as_str().unwrap()).unwrap();
    assert!(
        sent_at >= acked && acked - received_at >= 2_500,
        "ack {acked}, received {received_at}, sent {sent_at}"
    );

    // A nack: `failed` with WhatsApp's code, never `sent`, nothing received.
    mock.set_behaviour(REFUSING, AckBehaviour::Error("479".into()));
    let refused = enqueue(&cluster, REFUSING, "ditolak").await;
    let failed = wait_job(&cluster, &refused, "the refused job to fail", |j| {
        j["status"] == "failed"
    })
    .await;
    assert_eq!(failed["lastError"]["code"], "whatsapp_479", "{failed}");
    let message = failed["lastError"]["message"].as_str().unwrap();
    assert!(message.starts_with("WhatsApp error 479: "), "{message}");
    assert_eq!(failed["sentAt"], Value::Null, "{failed}");
    assert!(!mock.received().iter().any(|r| r.to == REFUSING));

    // No ack at all: one resend under the same id, then `no_server_ack`.
    mock.set_behaviour(SILENT, AckBehaviour::Never);
    let silent = enqueue(&cluster, SILENT, "tanpa jawaban").await;
    let failed = wait_job(&cluster, &silent, "the unacked job to fail", |j| {
        j["status"] == "failed"
    })
    .await;
    assert_eq!(failed["lastError"]["code"], "no_server_ack", "{failed}");
    let (logged_id, sent_at) = send_log_entry(&cluster, &silent).expect("a send log entry");
    assert_eq!(sent_at, None, "the send log never marked it sent");
    let stanzas: Vec<String> = mock
        .stanzas()
        .into_iter()
        .filter(|s| s.to == SILENT)
        .map(|s| s.message_id)
        .collect();
    assert_eq!(
        stanzas,
        [logged_id.clone(), logged_id],
        "one message id, sent twice"
    );

    // Nothing else was sent twice, and every warm text arrived once.
    let mut copies = BTreeMap::new();
    for r in mock.received() {
        *copies.entry(r.message_id).or_insert(0) += 1;
    }
    assert!(copies.values().all(|n| *n == 1), "{copies:?}");
    assert_eq!(
        mock.received()
            .iter()
            .filter(|r| WARM.contains(&r.to.as_str()))
            .count(),
        50
    );
    let status = cluster.wait_status(WAIT, "the counts", |_| true).await;
    assert_eq!(status["queue"]["counts"]["sent"], 51, "{status}");
    assert_eq!(status["queue"]["counts"]["failed"], 2, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_answers_nothing_is_replaced_and_sending_resumes() {
    let mock = MockServer::start(PHONE).await.unwrap();
    for r in WARM {
        mock.add_contact(r);
    }
    let cluster = linked_cluster(&mock, &[("WA_SERVER_ACK_TIMEOUT_MS", "3000")]).await;
    let first = enqueue(&cluster, WARM[0], "sebelum").await;
    wait_job(&cluster, &first, "the first job sent", |j| {
        j["status"] == "sent"
    })
    .await;
    let logins = mock.logins();

    // WhatsApp stops answering on the open connection, which stays open.
    mock.stall();
    let mut ids = Vec::new();
    for (n, to) in WARM.iter().enumerate() {
        ids.push(enqueue(&cluster, to, &format!("sesudah {n}")).await);
    }
    for id in &ids {
        let job = wait_job(&cluster, id, "a job sent after the stall", |j| {
            j["status"] == "sent"
        })
        .await;
        assert_eq!(job["attempts"], 1, "{job}");
    }
    assert!(mock.logins() > logins, "the gateway logged in again");
    assert!(
        cluster
            .log("wa-gateway")
            .contains("replacing a connection that does not answer"),
        "the gateway said why it reconnected:\n{}",
        cluster.log("wa-gateway")
    );
    // Each text arrived once, under one message id each.
    let texts: Vec<String> = mock.received().into_iter().map(|r| r.text).collect();
    let mut expected: Vec<String> = (0..WARM.len()).map(|n| format!("sesudah {n}")).collect();
    expected.insert(0, "sebelum".into());
    assert_eq!(texts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_time_lock_cold_contacts_wait_for_its_end_while_warm_ones_go_out() {
    const COLD: [&str; 2] = ["6281200000061", "6281200000062"];
    let mock = MockServer::start(PHONE).await.unwrap();
    for r in WARM.iter().chain(&COLD) {
        mock.add_contact(r);
    }
    for r in COLD {
        mock.set_cold(r);
    }
    let cluster = linked_cluster(&mock, &[]).await;

    mock.reach_out_time_lock(Duration::from_secs(15));
    let lock_end = (abtrack_proto::time::now_ms() / 1000 + 15) * 1000;
    let cold: Vec<String> = enqueue_each(&cluster, &COLD, "kabar untuk orang tua baru").await;
    let warm: Vec<String> = enqueue_each(&cluster, &WARM, "kabar untuk orang tua lama").await;

    // Warm contacts go out while the cold ones wait, no attempt spent.
    for id in &warm {
        wait_job(&cluster, id, "a warm job sent", |j| j["status"] == "sent").await;
    }
    for id in &cold {
        wait_held(&cluster, id, "a cold job waiting", "whatsapp_463", lock_end).await;
    }
    // The dashboard's status says until when.
    let status = cluster
        .wait_status(WAIT, "the time lock in the status", |s| {
            s["gateway"]["timeLockUntil"].is_string()
        })
        .await;
    let shown = parse_rfc3339(status["gateway"]["timeLockUntil"].as_str().unwrap()).unwrap();
    assert!(
        (shown - lock_end).abs() <= 1_000,
        "shown {shown}, lock end {lock_end}"
    );
    assert_eq!(status["gateway"]["status"], "connected");
    assert!(
        !mock
            .received()
            .iter()
            .any(|r| COLD.contains(&r.to.as_str()))
    );

    // After the lock, the waiting jobs go out, each once.
    for id in &cold {
        let job = wait_job(&cluster, id, "a cold job sent after the lock", |j| {
            j["status"] == "sent"
        })
        .await;
        assert_eq!(job["attempts"], 1, "{job}");
        let sent_at = parse_rfc3339(job["sentAt"].as_str().unwrap()).unwrap();
        assert!(
            sent_at >= lock_end - 1_000,
            "sent at {sent_at} before the lock's end {lock_end}"
        );
    }
    for r in COLD {
        assert_eq!(mock.received().iter().filter(|m| m.to == r).count(), 1);
    }
}

/// Enqueues one job to each of `to`, in order.
async fn enqueue_each(cluster: &Cluster, to: &[&str], text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for r in to {
        ids.push(enqueue(cluster, r, text).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_a_delivery_receipt_is_flagged_then_moves_on() {
    const OFFLINE: &str = "6281200000071";
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(OFFLINE);
    let cluster = linked_cluster(&mock, &[("WA_DELIVERY_TIMEOUT_SECS", "2")]).await;

    // The recipient's phone is off: the server acks, no delivery receipt comes.
    let id = enqueue(&cluster, OFFLINE, "ponsel mati").await;
    let sent = wait_job(&cluster, &id, "the job sent", |j| j["status"] == "sent").await;
    assert_eq!(sent["deliveryOverdue"], false, "{sent}");
    let overdue = wait_job(&cluster, &id, "the job flagged overdue", |j| {
        j["deliveryOverdue"] == true
    })
    .await;
    assert_eq!(overdue["status"], "sent", "{overdue}");
    let status = cluster
        .wait_status(WAIT, "the overdue count", |s| {
            s["queue"]["counts"]["deliveryOverdue"] == 1
        })
        .await;
    assert_eq!(status["queue"]["counts"]["sent"], 1);
    let metrics = cluster.text("/metrics").await;
    assert!(
        metrics.contains("abtrack_jobs_delivery_overdue 1"),
        "{metrics}"
    );

    // The phone comes online: the receipt still moves the job on.
    let message_id = overdue["messageId"].as_str().unwrap();
    mock.send_receipt(OFFLINE, message_id, ReceiptKind::Delivered)
        .unwrap();
    let delivered = wait_job(&cluster, &id, "the job delivered", |j| {
        j["status"] == "delivered"
    })
    .await;
    assert_eq!(delivered["deliveryOverdue"], false, "{delivered}");
    cluster
        .wait_status(WAIT, "no overdue job left", |s| {
            s["queue"]["counts"]["deliveryOverdue"] == 0
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_whatsapp_addresses_by_lid_only_gets_the_exact_text() {
    const BY_LID: &str = "6281200000081";
    let mock = MockServer::start(PHONE).await.unwrap();
    let lid = mock.add_lid_contact(BY_LID);
    mock.add_contact(WARM[0]);
    let cluster = linked_cluster(&mock, &[]).await;

    // The number check gives the LID, the client encrypts for it (the mock serves
    // this contact's keys under the LID alone), and the job records it.
    let text = "Ananda tiba di sekolah pukul 07.15 ✅";
    let id = enqueue(&cluster, BY_LID, text).await;
    let sent = wait_job(&cluster, &id, "the job to the LID sent", |j| {
        j["status"] == "sent"
    })
    .await;
    assert_eq!(
        sent["recipientLid"],
        format!("{}@lid", abtrack_proto::mask_phone(&lid)),
        "{sent}"
    );
    let message_id = sent["messageId"].as_str().unwrap();
    let received: Vec<_> = mock
        .received()
        .into_iter()
        .filter(|r| r.to == BY_LID)
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].text, text);
    assert_eq!(received[0].message_id, message_id);

    // Its phone's receipt comes from the LID and still finds the job.
    mock.send_receipt(BY_LID, message_id, ReceiptKind::Delivered)
        .unwrap();
    wait_job(&cluster, &id, "the job to the LID delivered", |j| {
        j["status"] == "delivered"
    })
    .await;

    // A contact WhatsApp addresses by number has no LID on its job.
    let warm = enqueue(&cluster, WARM[0], "kabar").await;
    let job = wait_job(&cluster, &warm, "the warm job sent", |j| {
        j["status"] == "sent"
    })
    .await;
    assert_eq!(job["recipientLid"], Value::Null, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_new_chat_quota_is_used_up_new_chats_wait_while_known_ones_go_out() {
    const NEW: [&str; 3] = ["6281200000101", "6281200000102", "6281200000103"];
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(WARM[0]);
    for r in NEW {
        mock.add_contact(r);
        mock.set_cold(r);
    }
    mock.new_chat_quota(2, Duration::from_secs(40));
    let cycle_end = (abtrack_proto::time::now_ms() / 1000 + 40) * 1000;
    let cluster = linked_cluster(&mock, &[]).await;
    // A contact who wrote to the account before: not counted by WhatsApp.
    let known = enqueue(&cluster, WARM[0], "pertama").await;
    wait_job(&cluster, &known, "the first job sent", |j| {
        j["status"] == "sent"
    })
    .await;

    // Two new chats fit the quota; the third waits for the cycle's end with no
    // attempt spent, held by the gateway: nothing reaches the server for it.
    let ids = enqueue_each(&cluster, &NEW, "kabar dari sekolah").await;
    for id in &ids[..2] {
        wait_job(&cluster, id, "a new chat within the quota sent", |j| {
            j["status"] == "sent"
        })
        .await;
    }
    wait_held(
        &cluster,
        &ids[2],
        "the third new chat waiting",
        "new_chat_quota",
        cycle_end,
    )
    .await;
    assert!(!mock.stanzas().iter().any(|s| s.to == NEW[2]));
    let status = cluster
        .wait_status(WAIT, "the quota on the dashboard", |s| {
            s["gateway"]["newChatQuota"]["used"] == 2
        })
        .await;
    assert_eq!(status["gateway"]["newChatQuota"]["total"], 2, "{status}");

    // A contact written to before still goes out meanwhile.
    let again = enqueue(&cluster, WARM[0], "kedua").await;
    let sent = wait_job(&cluster, &again, "the known contact's job sent", |j| {
        j["status"] == "sent"
    })
    .await;
    assert!(parse_rfc3339(sent["sentAt"].as_str().unwrap()).unwrap() < cycle_end);

    // After the cycle, the waiting new chat goes out, once.
    let job = wait_job(&cluster, &ids[2], "the third new chat sent", |j| {
        j["status"] == "sent"
    })
    .await;
    assert_eq!(job["attempts"], 1, "{job}");
    let sent_at = parse_rfc3339(job["sentAt"].as_str().unwrap()).unwrap();
    assert!(
        sent_at >= cycle_end - 1_000,
        "sent at {sent_at}, cycle end {cycle_end}"
    );
    assert_eq!(mock.received().iter().filter(|r| r.to == NEW[2]).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_stays_dead_is_reported_with_a_next_step_until_whatsapp_answers() {
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(WARM[0]);
    let cluster = linked_cluster(
        &mock,
        &[
            ("WA_SERVER_ACK_TIMEOUT_MS", "2000"),
            ("WA_RECONNECT_MAX_MS", "20000"),
        ],
    )
    .await;

    // Every connection, new ones too, takes no message and answers no ping:
    // replacing it does not help, so the state stops saying `connected` and says
    // what to do.
    mock.ignore_sends(true);
    mock.drop_connections();
    let id = enqueue(&cluster, WARM[0], "sesudah gangguan").await;
    // The waits between attempts grow (a login does not reset them while nothing is
    // answered), so the state spends longer and longer saying so.
    let status = cluster
        .wait_status(WAIT, "a lasting state with the next step", |s| {
            let g = &s["gateway"];
            let at = |k: &str| g[k].as_str().and_then(parse_rfc3339);
            g["status"] == "disconnected"
                && g["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("answers nothing"))
                && at("retryAt")
                    .zip(at("since"))
                    .is_some_and(|(r, s)| r - s >= 1_000)
        })
        .await;
    assert!(
        status["gateway"]["detail"]
            .as_str()
            .unwrap()
            .contains("check this computer's internet connection"),
        "{status}"
    );
    let waiting = job(&cluster, &id).await;
    assert_ne!(waiting["status"], "sent", "{waiting}");

    // WhatsApp answers again: the gateway gets there by itself and the job goes out.
    mock.ignore_sends(false);
    let sent = wait_job(&cluster, &id, "the job sent once WhatsApp answers", |j| {
        j["status"] == "sent"
    })
    .await;
    assert_eq!(
        mock.received()
            .iter()
            .filter(|r| r.text == "sesudah gangguan")
            .count(),
        1,
        "{sent}"
    );
    cluster
        .wait_status(WAIT, "connected again", |s| {
            s["gateway"]["status"] == "connected"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_encrypted_fails_after_its_attempts_instead_of_waiting() {
    const KEYLESS: &str = "6281200000111";
    let mock = MockServer::start(PHONE).await.unwrap();
    mock.add_contact(KEYLESS);
    mock.withhold_keys(KEYLESS);
    let cluster = linked_cluster(
        &mock,
        &[
            ("DISPATCHER_MAX_ATTEMPTS", "2"),
            ("DISPATCHER_BACKOFF_BASE_SECS", "1"),
        ],
    )
    .await;
    let id = enqueue(&cluster, KEYLESS, "tanpa kunci").await;
    let failed = wait_job(&cluster, &id, "the job failed", |j| j["status"] == "failed").await;
    assert_eq!(failed["lastError"]["code"], "send_failed", "{failed}");
    assert_eq!(failed["attempts"], 2, "{failed}");
    let message = failed["lastError"]["message"].as_str().unwrap();
    assert!(message.contains("gave up after 2 attempts"), "{message}");
    assert!(mock.stanzas().iter().all(|s| s.to != KEYLESS));
    for service in ["wa-gateway", "dispatcher"] {
        assert!(
            !cluster.log(service).contains(KEYLESS),
            "{service} logged the number in full"
        );
    }
}
