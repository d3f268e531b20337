//! Several WhatsApp accounts: one gateway per account, one dispatcher routing each
//! job to the gateway of the account it names, and an account that cannot send
//! holding up only its own jobs.

use std::collections::HashSet;
use std::time::Duration;

use abtrack_e2e::Cluster;
use serde_json::json;

/// The second account's gateway: its name in the cluster and its data folder.
const SMP: &str = "wa-gateway-smp-2";
const SMP_DATA: &str = "data/wa-gateway/smp-2";

/// The job ids each gateway's dry-run file holds, by data folder.
fn sent_by(cluster: &Cluster, data_dir: &str) -> HashSet<String> {
    cluster
        .dry_run_lines_in(data_dir)
        .iter()
        .filter_map(|l| l["job_id"].as_str().map(str::to_owned))
        .collect()
}

async fn enqueue(cluster: &Cluster, id: &str, account: Option<&str>) {
    let mut body = json!({ "id": id, "to": "0812-3456-7890", "message": format!("Halo {id}") });
    if let Some(account) = account {
        body["account"] = json!(account);
    }
    let (code, answer) = cluster.post("/api/messages", body.to_string()).await;
    assert_eq!(code, 201, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_goes_out_from_its_own_account_and_a_stopped_account_holds_up_only_its_jobs() {
    let mut cluster = Cluster::start(&[("WA_ACCOUNT", "sd-harapan")]).await;
    let smp_port = cluster.spawn_gateway(SMP, "smp-2");
    let accounts = format!(
        "sd-harapan=http://127.0.0.1:{},smp-2=http://127.0.0.1:{smp_port}",
        cluster.ports["wa-gateway"]
    );
    cluster.give_accounts("dispatcher", &accounts).await;
    cluster
        .wait_status(Duration::from_secs(30), "both accounts ready", |s| {
            s["queue"]["gatewayReady"] == true
        })
        .await;

    // 100 jobs split between the two; the default account's half names it or not.
    let mut sd = Vec::new();
    let mut smp = Vec::new();
    for i in 0..100 {
        let id = format!("split-{i:03}");
        let account = match i % 4 {
            0 => None,
            1 => Some("sd-harapan"),
            _ => Some("smp-2"),
        };
        enqueue(&cluster, &id, account).await;
        if account == Some("smp-2") {
            smp.push(id);
        } else {
            sd.push(id);
        }
    }
    cluster.wait_sent(&sd, Duration::from_secs(60)).await;
    cluster.wait_sent(&smp, Duration::from_secs(60)).await;
    let expected = |ids: &[String]| ids.iter().cloned().collect::<HashSet<_>>();
    assert_eq!(sent_by(&cluster, "data/wa-gateway"), expected(&sd));
    assert_eq!(sent_by(&cluster, SMP_DATA), expected(&smp));
    let job = cluster.get("/api/jobs/split-002").await;
    assert_eq!(job["account"], "smp-2");
    assert!(
        cluster
            .get("/api/jobs/split-000")
            .await
            .get("account")
            .is_none()
    );

    // smp-2's gateway stops: its jobs wait, sd-harapan's keep going.
    cluster.stop(SMP);
    cluster
        .wait_status(Duration::from_secs(30), "smp-2 to be waited for", |s| {
            s["queue"]["waitingReason"]
                .as_str()
                .is_some_and(|r| r.starts_with("smp-2: "))
        })
        .await;
    let mut sd_later = Vec::new();
    let mut smp_later = Vec::new();
    for i in 0..10 {
        let (id_sd, id_smp) = (format!("later-sd-{i}"), format!("later-smp-{i}"));
        enqueue(&cluster, &id_smp, Some("smp-2")).await;
        enqueue(&cluster, &id_sd, None).await;
        sd_later.push(id_sd);
        smp_later.push(id_smp);
    }
    cluster.wait_sent(&sd_later, Duration::from_secs(30)).await;
    for id in &smp_later {
        let job = cluster.get(&format!("/api/jobs/{id}")).await;
        assert_eq!(job["status"], "pending", "{job}");
    }
    // Back: its jobs go out, from its own number.
    cluster.spawn_gateway(SMP, "smp-2");
    cluster.wait_sent(&smp_later, Duration::from_secs(60)).await;
    let smp_sent = sent_by(&cluster, SMP_DATA);
    assert!(smp_later.iter().all(|id| smp_sent.contains(id)));
    assert!(sd_later.iter().all(|id| !smp_sent.contains(id)));

    // The logger holds each outcome with the account that sent it (jobs naming none
    // as the default account's).
    let outbox = cluster.dir.path().join("data/sheets-logger/outbox.sqlite3");
    let by_account = || -> Vec<(String, i64)> {
        let conn = rusqlite::Connection::open_with_flags(
            &outbox,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn
            .prepare("SELECT account, COUNT(*) FROM outbox GROUP BY account ORDER BY account")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let expected = vec![("sd-harapan".to_owned(), 60), ("smp-2".to_owned(), 60)];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while by_account() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox by account: {:?}",
            by_account()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An account nobody sends for is refused at the door, naming the accounts.
    let body = json!({ "to": "0812-3456-7890", "message": "Halo", "account": "sma-9" });
    let (code, answer) = cluster.post("/api/messages", body.to_string()).await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(answer["field"], "account", "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("the accounts are: sd-harapan, smp-2"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_holding_another_account_is_never_sent_through() {
    let mut cluster = Cluster::start(&[("WA_ACCOUNT", "sd-harapan")]).await;
    // The address of sd-harapan's gateway given for smp-2.
    let accounts = format!("smp-2=http://127.0.0.1:{}", cluster.ports["wa-gateway"]);
    cluster.give_accounts("dispatcher", &accounts).await;
    enqueue(&cluster, "wrong-number-1", None).await;
    cluster
        .wait_status(Duration::from_secs(30), "the mix-up to be reported", |s| {
            s["queue"]["waitingReason"]
                .as_str()
                .is_some_and(|r| r.contains("holds account \"sd-harapan\", not \"smp-2\""))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = cluster.get("/api/jobs/wrong-number-1").await;
    assert_eq!(job["status"], "pending", "{job}");
    assert!(cluster.sends().is_empty());
}
