//! The gateway killed (SIGKILL) after a message left but before its answer was
//! recorded: the resend after restart reuses the first message id, and the message
//! exists once.

use std::time::Duration;

use abtrack_e2e::Cluster;
use abtrack_proto::gateway::v1::SendRequest;
use abtrack_proto::gateway::v1::gateway_client::GatewayClient;

fn request(job_id: &str) -> tonic::Request<SendRequest> {
    let mut request = tonic::Request::new(SendRequest {
        job_id: job_id.into(),
        to: "0812-3456-7890".into(),
        message: "Ananda tiba di sekolah pukul 07:02".into(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(60));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_between_intent_and_answer_resends_under_the_same_id() {
    // The gateway answers a minute after writing, so the kill lands in between.
    let mut cluster = Cluster::start(&[("WA_DRY_RUN_ANSWER_DELAY_MS", "60000")]).await;
    let url = format!("http://127.0.0.1:{}", cluster.ports["wa-gateway"]);
    let mut client = GatewayClient::connect(url.clone()).await.unwrap();
    let pending = tokio::spawn(async move { client.send(request("crash-1")).await });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first_id = loop {
        let lines = cluster.dry_run_lines();
        if let Some(line) = lines.iter().find(|l| l["job_id"] == "crash-1") {
            break line["message_id"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message never left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.kill("wa-gateway");
    let answer = pending.await.unwrap();
    assert!(answer.is_err(), "the first call got no answer: {answer:?}");

    // The log holds the intent and no outcome.
    let log = cluster.dir.path().join("data/wa-gateway/sends.sqlite3");
    let (message_id, sent_at): (String, Option<i64>) = rusqlite::Connection::open(&log)
        .unwrap()
        .query_row(
            "SELECT message_id, sent_at FROM sends WHERE job_id = 'crash-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(message_id, first_id);
    assert_eq!(sent_at, None);

    cluster.set_env("WA_DRY_RUN_ANSWER_DELAY_MS", "0");
    cluster.spawn("wa-gateway");
    cluster.wait_serving("wa-gateway").await;
    let mut client = GatewayClient::connect(url).await.unwrap();
    let resent = client.send(request("crash-1")).await.unwrap().into_inner();
    assert_eq!(resent.message_id, first_id);
    let again = client.send(request("crash-1")).await.unwrap().into_inner();
    assert_eq!(again.message_id, first_id);
    assert!(again.duplicate);

    let copies = cluster
        .dry_run_lines()
        .iter()
        .filter(|l| l["job_id"] == "crash-1")
        .count();
    assert_eq!(copies, 1, "the message exists once");
}
