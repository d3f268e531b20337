//! `Send`: idempotency, deadlines, status codes; `Watch`; the service as a process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tonic::{Code, Request};

use abtrack_proto::gateway::v1::{self as pb, gateway_event::Event};
use abtrack_wa_gateway::sendlog::{Entry, SendLog};

use crate::support::{Options, TestGateway};

fn send(job_id: &str, to: &str, message: &str, timeout: Duration) -> Request<pb::SendRequest> {
    let mut request = Request::new(pb::SendRequest {
        job_id: job_id.into(),
        to: to.into(),
        message: message.into(),
        account: String::new(),
        media: None,
    });
    request.set_timeout(timeout);
    request
}

const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_second_send_of_a_job_returns_the_first_message_id_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(dir.path(), Options::default()).await;
    let mut client = gw.client.clone();
    let first = client
        .send(send("job-1", "0812-3456-7890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.duplicate);
    assert_eq!(first.recipient, "6281234567890@s.whatsapp.net");
    let second = client
        .send(send("job-1", "0812-3456-7890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    assert!(second.duplicate);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.sent_at, first.sent_at);
    assert_eq!(gw.sent_job_ids(), ["job-1"]);
}

#[tokio::test]
async fn a_send_for_another_account_is_refused_and_the_state_names_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(dir.path(), Options::default()).await;
    let mut client = gw.client.clone();
    let mut other = send("job-1", "0812-3456-7890", "Halo", LONG);
    other.get_mut().account = "smp-2".into();
    let err = client.send(other).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .starts_with("this gateway holds account \"sd-harapan\", not \"smp-2\""),
        "{}",
        err.message()
    );
    assert!(gw.sent_job_ids().is_empty());
    let mut own = send("job-1", "0812-3456-7890", "Halo", LONG);
    own.get_mut().account = "sd-harapan".into();
    client.send(own).await.unwrap();
    assert_eq!(gw.sent_job_ids(), ["job-1"]);
    let mut watch = client
        .watch(pb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    match watch.message().await.unwrap().unwrap().event {
        Some(Event::State(state)) => assert_eq!(state.account, "sd-harapan"),
        other => panic!("the first event is not the state: {other:?}"),
    }
}

#[tokio::test]
async fn a_deadline_exceeded_then_a_retry_sends_once() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(
        dir.path(),
        Options {
            delay: Duration::from_millis(1500),
            ..Options::default()
        },
    )
    .await;
    let mut client = gw.client.clone();
    let err = client
        .send(send(
            "job-slow",
            "081234567890",
            "Halo",
            Duration::from_millis(700),
        ))
        .await
        .unwrap_err();
    // tonic's server answers an expired `grpc-timeout` with CANCELLED "Timeout expired";
    // a proxy or another server may say DEADLINE_EXCEEDED. Either is the deadline.
    assert!(
        err.code() == Code::DeadlineExceeded
            || (err.code() == Code::Cancelled && err.message().contains("Timeout")),
        "{err:?}"
    );
    // The retry arrives while the first send is still in flight: it waits its turn
    // and gets the first send's message id.
    let retry = client
        .send(send("job-slow", "081234567890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.duplicate);
    assert_eq!(gw.messenger.calls.load(Ordering::SeqCst), 1);
    assert_eq!(gw.sent_job_ids(), ["job-slow"]);
}

#[tokio::test]
async fn an_intent_without_an_outcome_is_resent_under_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    // The state a crash leaves between writing the message and recording it: the
    // intent in the log, the line in the dry-run file, no outcome.
    {
        let log = SendLog::open(&dir.path().join("sends.sqlite3")).unwrap();
        let entry = Entry {
            job_id: "job-crash".into(),
            message_id: "3EB0CRASHED".into(),
            recipient: "6281234567890@s.whatsapp.net".into(),
            sent_at: None,
            recipient_lid: None,
        };
        log.write_intent(&entry, 1).await.unwrap();
        std::fs::write(
            dir.path().join("dry-run.jsonl"),
            "{\"job_id\":\"job-crash\",\"message_id\":\"3EB0CRASHED\",\"to\":\"6281234567890@s.whatsapp.net\",\"text\":\"Halo\"}\n",
        )
        .unwrap();
    }
    let gw = TestGateway::start(dir.path(), Options::default()).await;
    let mut client = gw.client.clone();
    let answer = client
        .send(send("job-crash", "081234567890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.message_id, "3EB0CRASHED");
    assert_eq!(
        gw.messenger.calls.load(Ordering::SeqCst),
        1,
        "sent again under the same id"
    );
    assert_eq!(
        gw.sent_job_ids(),
        ["job-crash"],
        "the messenger treats it as the same message"
    );
}

#[tokio::test]
async fn a_job_sent_again_after_its_send_log_was_lost_keeps_its_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let gw = TestGateway::start(dir.path(), Options::default()).await;
        let mut client = gw.client.clone();
        client
            .send(send("job-lost", "0812-3456-7890", "Halo", LONG))
            .await
            .unwrap()
            .into_inner()
    };
    // The send log is damaged while the gateway is stopped: once it has closed the
    // log (its write-ahead log folded in and removed).
    let log = dir.path().join("sends.sqlite3");
    let wal = dir.path().join("sends.sqlite3-wal");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while wal.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not close its log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&log, &garbage).unwrap();

    let gw = TestGateway::start(dir.path(), Options::default()).await;
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("damaged"))
        .expect("the damaged log was kept aside")
        .map(|e| e.unwrap().path().join("sends.sqlite3"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(&kept[0]).unwrap(), garbage);

    // The gateway no longer knows the job was sent: it sends it again, under the
    // same message id, which the messenger (as WhatsApp) takes as the same message.
    let mut client = gw.client.clone();
    let again = client
        .send(send("job-lost", "0812-3456-7890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(gw.sent_job_ids(), ["job-lost"]);

    // Another job, or the same id reused for another text, is another message.
    let other = client
        .send(send("job-other", "0812-3456-7890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(other.message_id, first.message_id);
    assert!(other.message_id.starts_with("3EB0") && other.message_id.len() == 20);
}

#[tokio::test]
async fn status_codes_say_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(
        dir.path(),
        Options {
            not_on_whatsapp: vec!["6281200000000@s.whatsapp.net".into()],
            ..Options::default()
        },
    )
    .await;
    let mut client = gw.client.clone();
    let cases = [
        (
            "j1",
            "abc",
            "Halo",
            Code::InvalidArgument,
            "recipient contains 'a'",
        ),
        ("j2", "0812", "Halo", Code::InvalidArgument, "digits"),
        (
            "j3",
            "081234567890",
            "  \n ",
            Code::InvalidArgument,
            "message is empty",
        ),
        (
            "",
            "081234567890",
            "Halo",
            Code::InvalidArgument,
            "job_id is empty",
        ),
        (
            "j4",
            "0812-0000-0000",
            "Halo",
            Code::NotFound,
            "62812*****000 is not on WhatsApp",
        ),
    ];
    for (job, to, message, code, text) in cases {
        let err = client.send(send(job, to, message, LONG)).await.unwrap_err();
        assert_eq!(err.code(), code, "{job}: {err:?}");
        assert!(err.message().contains(text), "{job}: {}", err.message());
    }
    let huge = "x".repeat(65_537);
    let err = client
        .send(send("j5", "081234567890", &huge, LONG))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .request_pair_code(pb::RequestPairCodeRequest {
            phone: "081234567890".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let check = client
        .check_number(pb::CheckNumberRequest {
            phone: "+62 812 0000 0000".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (check.recipient.as_str(), check.on_whatsapp),
        ("6281200000000@s.whatsapp.net", false)
    );
    assert!(gw.sent_job_ids().is_empty());
}

#[tokio::test]
async fn pacing_refuses_a_send_whose_slot_is_past_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(
        dir.path(),
        Options {
            min_interval: Duration::from_secs(30),
            ..Options::default()
        },
    )
    .await;
    let mut client = gw.client.clone();
    client
        .send(send("first", "081234567890", "Halo", LONG))
        .await
        .unwrap();
    let err = client
        .send(send(
            "second",
            "081234567890",
            "Halo",
            Duration::from_secs(2),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("pacing"), "{}", err.message());
    assert_eq!(gw.sent_job_ids(), ["first"]);
}

#[tokio::test]
async fn the_state_reports_the_pacing_and_the_days_sends_against_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(
        dir.path(),
        Options {
            min_interval: Duration::from_millis(20),
            daily_cap: 2,
            ..Options::default()
        },
    )
    .await;
    let mut client = gw.client.clone();
    let mut watch = client
        .watch(pb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    // Waits, bounded, for a state whose pacing `f` accepts.
    let mut pacing_until = async |f: &dyn Fn(&pb::Pacing) -> bool| loop {
        let event = tokio::time::timeout(LONG, watch.message())
            .await
            .expect("no such state in time")
            .unwrap()
            .unwrap();
        if let Some(Event::State(state)) = event.event
            && let Some(pacing) = state.pacing
            && f(&pacing)
        {
            return pacing;
        }
    };
    let idle = pacing_until(&|_| true).await;
    assert_eq!(
        (idle.min_interval_ms, idle.jitter_ms, idle.daily_cap),
        (20, 0, 2)
    );
    assert_eq!(idle.sent_last_day, 0);
    assert!(idle.cap_frees_at.is_none());

    let first = client
        .send(send("one", "081234567890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    let one = pacing_until(&|p| p.sent_last_day == 1).await;
    assert!(one.cap_frees_at.is_none(), "the cap is not reached yet");
    client
        .send(send("two", "081234567891", "Halo", LONG))
        .await
        .unwrap();
    let full = pacing_until(&|p| p.sent_last_day == 2).await;
    let first_at = first.sent_at.unwrap();
    assert_eq!(
        full.cap_frees_at.unwrap(),
        prost_types::Timestamp {
            seconds: first_at.seconds + 24 * 3600,
            ..first_at
        },
        "the first send ages out a day after it went"
    );
    let err = client
        .send(send(
            "three",
            "081234567892",
            "Halo",
            Duration::from_secs(2),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("daily cap"), "{}", err.message());
}

#[tokio::test]
async fn watch_starts_with_the_state_and_carries_receipts_with_their_job() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(
        dir.path(),
        Options {
            receipts: true,
            ..Options::default()
        },
    )
    .await;
    let mut client = gw.client.clone();
    let mut stream = client
        .watch(pb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    let Some(Event::State(state)) = stream.message().await.unwrap().unwrap().event else {
        panic!("the first event is the state");
    };
    assert_eq!(state.status, pb::ConnectionStatus::Connected as i32);
    assert_eq!(state.mode, "dry-run");
    let sent = client
        .send(send("job-r", "081234567890", "Halo", LONG))
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let event = tokio::time::timeout(LONG, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(Event::Receipt(r)) = event.event {
            assert_eq!(
                (r.job_id.as_str(), r.message_id.as_str()),
                ("job-r", sent.message_id.as_str())
            );
            kinds.push(r.kind);
        }
    }
    assert_eq!(
        kinds,
        [
            pb::ReceiptKind::Delivered as i32,
            pb::ReceiptKind::Read as i32
        ]
    );
    drop(gw.data);
}
