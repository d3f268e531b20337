//! Property tests of the job checks and of the job as each queue stores and reads
//! it back: any input gets an answer that names its field, never a panic, and an
//! accepted job comes back from the local queue and from Firestore exactly as written.

use abtrack_dispatcher::job::{JobStatus, MAX_SEND_AT_MS, NewJob};
use proptest::prelude::*;

use crate::backends::{Backend, lane, open_pair};

/// Any text at all: control characters, NUL, right-to-left marks, emoji, long runs.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[ \t\n\u{200b}\u{feff}\u{202e}]{0,8}",
        "[0-9+()\\-. ]{0,24}",
    ]
}

/// Recipients in every shape a person writes, with country code 62: Indonesian
/// mobile numbers as libphonenumber knows them (8, then 1-3 or 5-9, 9 to 12 digits).
fn phone() -> impl Strategy<Value = String> {
    let digits = "8[1-35-9][0-9]{7,10}";
    prop_oneof![
        digits.prop_map(|d| format!("0{d}")),
        digits.prop_map(|d| format!("+62 {d}")),
        digits.prop_map(|d| format!("62{d}")),
        digits.prop_map(|d| format!("0062{d}")),
        digits.prop_map(|d| format!("+62 (0){}-{}", &d[..3], &d[3..])),
        digits.prop_map(|d| format!("  0{}.{}  ", &d[..4], &d[4..])),
        digits.prop_map(|d| format!("62{d}@s.whatsapp.net")),
        "[0-9]{18}".prop_map(|g| format!("{g}@g.us")),
    ]
}

/// A message a person could send: some visible character among anything else.
fn message() -> impl Strategy<Value = String> {
    // A letter, digit or symbol, but not the Hangul fillers: letters by category that
    // take no space on a screen, which the message rule counts as invisible.
    let visible = "[[\\p{L}\\p{N}\\p{So}]--[\\x{115F}\\x{1160}\\x{3164}\\x{FFA0}]]";
    (any_text(), visible, any_text()).prop_map(|(a, visible, b)| format!("{a}{visible}{b}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_refusal_names_its_field(
        id in proptest::option::of(any_text()),
        to in any_text(),
        message in any_text(),
        send_at in proptest::option::of(any::<i64>()),
    ) {
        match NewJob::validate(id, &to, &message, send_at, "62") {
            Ok(job) => {
                prop_assert_eq!(job.to, to.trim());
                prop_assert_eq!(job.message, message);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    ["id: ", "to: ", "message: ", "sendAt: "].iter().any(|f| text.starts_with(f)),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn well_formed_jobs_are_accepted(
        to in phone(),
        message in message(),
        send_at in proptest::option::of(0..=MAX_SEND_AT_MS),
    ) {
        let job = NewJob::validate(None, &to, &message, send_at, "62");
        prop_assert!(job.is_ok(), "{to:?}: {job:?}");
    }
}

/// Enqueues accepted jobs on `backend` and reads each back, by id and by lease.
async fn round_trip(backend: Backend, jobs: Vec<(String, String, Option<i64>)>) {
    let (queue, _, _store) = open_pair(backend).await;
    for (n, (to, message, send_at)) in jobs.into_iter().enumerate() {
        let new = NewJob::validate(Some(format!("p-{n}")), &to, &message, send_at, "62").unwrap();
        let enqueued = queue.enqueue(new.clone(), 1_000).await.unwrap();
        assert!(enqueued.created);
        let stored = queue.get(&format!("p-{n}")).await.unwrap().unwrap();
        assert_eq!(stored.to, new.to, "{backend:?}");
        assert_eq!(stored.message, new.message, "{backend:?}");
        assert_eq!(stored.send_at, new.send_at, "{backend:?}");
        assert_eq!(stored.status, JobStatus::Pending);
        if send_at.is_none() {
            let leased = queue
                .lease_next("p", &lane(), 2_000, 60_000)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((leased.id, leased.message), (stored.id, stored.message));
        }
    }
}

fn round_trip_cases() -> impl Strategy<Value = Vec<(String, String, Option<i64>)>> {
    proptest::collection::vec(
        (
            phone(),
            message(),
            proptest::option::weighted(0.2, 1_000_000..=MAX_SEND_AT_MS),
        ),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn accepted_jobs_come_back_from_the_local_queue_as_written(jobs in round_trip_cases()) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(round_trip(Backend::Local, jobs));
    }

    #[test]
    fn accepted_jobs_come_back_from_firestore_as_written(jobs in round_trip_cases()) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(round_trip(Backend::Firestore, jobs));
    }
}
