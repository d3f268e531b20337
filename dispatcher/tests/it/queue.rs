//! The queue contract, run against both backends (the local SQLite queue and the
//! Firestore queue on the emulator): leases, expiry, ordering, retries, receipts,
//! outcome logging.

use std::collections::HashSet;

use abtrack_dispatcher::job::{Counts, Finish, JobError, JobStatus, NewJob, Receipt, Search};
use abtrack_dispatcher::lifecycle::StepKind;
use abtrack_dispatcher::queue::Queue;

use abtrack_dispatcher::account::Accounts;

use crate::backends::{Backend, lane, open_pair, open_pair_for};

/// Runs one contract test against each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$name(crate::backends::Backend::Local).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn firestore() {
                super::$name(crate::backends::Backend::Firestore).await
            }
        }
    )*};
}

on_both_backends!(
    two_workers_on_one_store_never_own_the_same_job,
    an_expired_lease_returns_to_pending_and_its_old_owner_cannot_finish,
    a_restart_under_the_same_owner_takes_its_jobs_back_at_once,
    a_job_whose_leases_keep_expiring_ends_failed,
    oldest_first_and_not_before_send_at,
    retries_releases_and_operator_retry,
    receipts_move_a_sent_job_on_even_when_they_overtake_the_outcome,
    an_overdue_delivery_is_flagged_counted_and_cleared_by_its_receipt,
    enqueue_with_an_id_is_idempotent,
    finished_outcomes_wait_for_the_logger_until_marked,
    each_account_leases_its_own_jobs_past_another_accounts_backlog,
    a_search_pages_newest_first_by_number_status_account_id_and_date,
    the_stats_count_each_hour_and_day_in_the_operators_time,
    media_is_kept_with_its_job_and_counts_in_its_identity,
);

fn new_job(to: &str, message: &str) -> NewJob {
    NewJob::validate(None, to, message, None, "62").unwrap()
}

/// Enqueues `message` to one number at `now`; answers the new job's id.
async fn enqueued(q: &Queue, message: &str, now: i64) -> String {
    q.enqueue(new_job("081234567890", message), now)
        .await
        .unwrap()
        .job
        .id
}

fn sent(id: &str) -> Finish {
    Finish::Sent {
        message_id: format!("m-{id}"),
        recipient: "6281234567890@s.whatsapp.net".into(),
        recipient_lid: Some("170000000000001@lid".into()),
        sent_at: 1,
    }
}

async fn two_workers_on_one_store_never_own_the_same_job(backend: Backend) {
    let (a, b, _store) = open_pair(backend).await;
    let mut ids = HashSet::new();
    for i in 0..300 {
        ids.insert(
            a.enqueue(new_job("081234567890", &format!("m{i}")), i)
                .await
                .unwrap()
                .job
                .id,
        );
    }
    let work = |queue: Queue, owner: &'static str| {
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = queue
                .lease_next(owner, &lane(), 1_000, 100_000)
                .await
                .unwrap()
            {
                assert_eq!(job.lease_owner.as_deref(), Some(owner));
                // The send between lease and outcome, as a worker makes it: without
                // it one worker's back-to-back transactions can keep the other
                // waiting on the write lock until the queue is empty.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let done = queue
                    .finish(&job.id, owner, sent(&job.id), 1_001)
                    .await
                    .unwrap();
                assert!(done.is_some(), "the owner still holds its lease");
                mine.push(job.id);
            }
            mine
        })
    };
    let (got_a, got_b) = tokio::join!(work(a.clone(), "a"), work(b, "b"));
    let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
    let set_a: HashSet<_> = got_a.iter().cloned().collect();
    let set_b: HashSet<_> = got_b.iter().cloned().collect();
    assert!(set_a.is_disjoint(&set_b), "a job was leased twice");
    assert_eq!(got_a.len() + got_b.len(), 300);
    assert_eq!(set_a.union(&set_b).cloned().collect::<HashSet<_>>(), ids);
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both workers took part"
    );
    assert_eq!(a.counts().await.unwrap().sent, 300);
}

async fn an_expired_lease_returns_to_pending_and_its_old_owner_cannot_finish(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    let id = enqueued(&q, "Halo", 0).await;
    let job = q
        .lease_next("crashed", &lane(), 10, 1_010)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Processing, 1));
    assert!(
        q.lease_next("other", &lane(), 20, 1_020)
            .await
            .unwrap()
            .is_none(),
        "held jobs are not leased"
    );
    assert!(
        q.sweep_expired(1_009).await.unwrap().is_empty(),
        "not expired yet"
    );
    let swept = q.sweep_expired(1_010).await.unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].status, JobStatus::Pending);
    assert_eq!(swept[0].last_error.as_ref().unwrap().code, "lease_expired");
    assert!(
        q.finish(&id, "crashed", sent(&id), 1_011)
            .await
            .unwrap()
            .is_none(),
        "the lease is lost"
    );
    let again = q
        .lease_next("other", &lane(), 1_020, 2_020)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (id.as_str(), 2));
    assert!(
        q.finish(&id, "other", sent(&id), 1_030)
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_restart_under_the_same_owner_takes_its_jobs_back_at_once(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    for n in 0..3 {
        q.enqueue(new_job("081234567890", &format!("m{n}")), n)
            .await
            .unwrap();
    }
    q.lease_next("me", &lane(), 10, 100_000)
        .await
        .unwrap()
        .unwrap();
    q.lease_next("other", &lane(), 10, 100_000)
        .await
        .unwrap()
        .unwrap();
    let released = q.release_owned("me", 20).await.unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(
        (released[0].status, released[0].attempts),
        (JobStatus::Pending, 1)
    );
    let counts = q.counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.processing),
        (2, 1),
        "the other owner keeps its lease"
    );
}

async fn a_job_whose_leases_keep_expiring_ends_failed(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    q.enqueue(new_job("081234567890", "Halo"), 0).await.unwrap();
    for round in 0..2 {
        q.lease_next("w", &lane(), round * 100, round * 100 + 10)
            .await
            .unwrap()
            .unwrap();
        let swept = q.sweep_expired(round * 100 + 10).await.unwrap();
        let expected = if round == 0 {
            JobStatus::Pending
        } else {
            JobStatus::Failed
        };
        assert_eq!(swept[0].status, expected);
    }
}

async fn oldest_first_and_not_before_send_at(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    let later = q
        .enqueue(
            NewJob::validate(None, "081234567890", "later", Some(5_000), "62").unwrap(),
            1,
        )
        .await
        .unwrap()
        .job
        .id;
    let second = enqueued(&q, "second", 3).await;
    let first = enqueued(&q, "first", 2).await;
    assert_eq!(q.next_due_at(10).await.unwrap(), Some(5_000));
    assert_eq!(
        q.lease_next("w", &lane(), 10, 100)
            .await
            .unwrap()
            .unwrap()
            .id,
        first
    );
    assert_eq!(
        q.lease_next("w", &lane(), 10, 100)
            .await
            .unwrap()
            .unwrap()
            .id,
        second
    );
    assert!(q.lease_next("w", &lane(), 10, 100).await.unwrap().is_none());
    assert_eq!(
        q.lease_next("w", &lane(), 5_000, 6_000)
            .await
            .unwrap()
            .unwrap()
            .id,
        later
    );
}

async fn retries_releases_and_operator_retry(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    let id = enqueued(&q, "Halo", 0).await;
    // Transient: back to pending, the attempt counts, not due before the backoff.
    q.lease_next("w", &lane(), 1, 100).await.unwrap().unwrap();
    let error = JobError::new("internal", "boom");
    let job = q
        .finish(
            &id,
            "w",
            Finish::Retry {
                error: error.clone(),
                next_attempt_at: 50,
            },
            2,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.status, job.attempts, job.next_attempt_at),
        (JobStatus::Pending, 1, Some(50))
    );
    assert!(q.lease_next("w", &lane(), 49, 100).await.unwrap().is_none());
    // Gateway not ready: released, the attempt does not count.
    q.lease_next("w", &lane(), 50, 150).await.unwrap().unwrap();
    let job = q
        .finish(
            &id,
            "w",
            Finish::Release {
                error: JobError::new("not_linked", "scan"),
                next_attempt_at: None,
            },
            51,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Pending, 1));
    // Only a failed job can be retried by an operator.
    assert!(
        q.retry(&id, 52)
            .await
            .unwrap_err()
            .to_string()
            .contains("only failed jobs")
    );
    q.lease_next("w", &lane(), 60, 160).await.unwrap().unwrap();
    let job = q
        .finish(&id, "w", Finish::Failed(error), 61)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 2));
    let job = q.retry(&id, 62).await.unwrap();
    assert_eq!(
        (job.status, job.attempts, job.last_error),
        (JobStatus::Pending, 0, None)
    );
    // Then sent and read: the history tells each step, with its time and error.
    q.lease_next("w", &lane(), 70, 170).await.unwrap().unwrap();
    q.finish(&id, "w", sent(&id), 71).await.unwrap().unwrap();
    q.record_receipt(&id, Receipt::Read, 75, 76)
        .await
        .unwrap()
        .unwrap();
    let steps = q.steps(&id).await.unwrap();
    let told: Vec<_> = steps
        .iter()
        .map(|s| {
            (
                s.at,
                s.kind,
                s.attempt,
                s.error.as_ref().map(|e| e.code.as_str()),
                s.next_attempt_at,
            )
        })
        .collect();
    use StepKind::*;
    assert_eq!(
        told,
        [
            (1, Leased, 1, None, None),
            (2, RetryLater, 1, Some("internal"), Some(50)),
            (50, Leased, 2, None, None),
            (51, Released, 2, Some("not_linked"), None),
            (60, Leased, 2, None, None),
            (61, Failed, 2, Some("internal"), None),
            (62, OperatorRetry, 0, None, None),
            (70, Leased, 1, None, None),
            (71, Sent, 1, None, None),
            (75, Read, 1, None, None),
        ]
    );
    assert_eq!(steps[0].owner.as_deref(), Some("w"));
    assert_eq!(steps[1].error.as_ref().unwrap().message, "boom");
    assert!(q.steps("missing").await.unwrap().is_empty());
    assert!(
        q.retry("missing", 63)
            .await
            .unwrap_err()
            .to_string()
            .contains("no job")
    );
}

async fn receipts_move_a_sent_job_on_even_when_they_overtake_the_outcome(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    let id = enqueued(&q, "Halo", 0).await;
    q.lease_next("w", &lane(), 1, 100).await.unwrap().unwrap();
    // The delivery receipt arrives before the outcome is written.
    let job = q
        .record_receipt(&id, Receipt::Delivered, 5, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.status, job.delivered_at),
        (JobStatus::Processing, Some(5))
    );
    let job = q.finish(&id, "w", sent(&id), 6).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Delivered);
    assert_eq!(job.recipient_lid.as_deref(), Some("170000000000001@lid"));
    let job = q
        .record_receipt(&id, Receipt::Read, 9, 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.status, job.read_at, job.delivered_at),
        (JobStatus::Read, Some(9), Some(5))
    );
    // A late delivery receipt does not move a read job back, and writes nothing.
    assert!(
        q.record_receipt(&id, Receipt::Delivered, 10, 10)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(q.get(&id).await.unwrap().unwrap().status, JobStatus::Read);
    assert!(
        q.record_receipt("unknown", Receipt::Read, 1, 1)
            .await
            .unwrap()
            .is_none()
    );
}

async fn an_overdue_delivery_is_flagged_counted_and_cleared_by_its_receipt(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    let id = enqueued(&q, "Halo", 0).await;
    q.lease_next("w", &lane(), 1, 100).await.unwrap().unwrap();
    // Only a sent job can be overdue.
    assert!(
        q.record_receipt(&id, Receipt::Overdue, 3, 3)
            .await
            .unwrap()
            .is_none()
    );
    q.finish(&id, "w", sent(&id), 6).await.unwrap().unwrap();
    let job = q
        .record_receipt(&id, Receipt::Overdue, 7, 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.status, job.delivery_overdue), (JobStatus::Sent, true));
    assert_eq!(q.counts().await.unwrap().delivery_overdue, 1);
    assert!(q.get(&id).await.unwrap().unwrap().delivery_overdue);
    // The receipt that comes late still moves it on, and clears the flag.
    let job = q
        .record_receipt(&id, Receipt::Delivered, 8, 8)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.status, job.delivery_overdue, job.delivered_at),
        (JobStatus::Delivered, false, Some(8))
    );
    assert_eq!(q.counts().await.unwrap().delivery_overdue, 0);
    // A delivered job is never overdue.
    assert!(
        q.record_receipt(&id, Receipt::Overdue, 9, 9)
            .await
            .unwrap()
            .is_none()
    );
}

async fn enqueue_with_an_id_is_idempotent(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    let job = NewJob::validate(
        Some("abs-2026-11-24-7A".into()),
        "081234567890",
        "Halo",
        None,
        "62",
    )
    .unwrap();
    let first = q.enqueue(job.clone(), 1).await.unwrap();
    let second = q.enqueue(job, 2).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.job, second.job);
    let different = NewJob::validate(
        Some("abs-2026-11-24-7A".into()),
        "081234567890",
        "Other",
        None,
        "62",
    )
    .unwrap();
    assert!(
        q.enqueue(different, 3)
            .await
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
    assert_eq!(q.counts().await.unwrap().pending, 1);
}

async fn finished_outcomes_wait_for_the_logger_until_marked(backend: Backend) {
    let (q, _, _store) = open_pair(backend).await;
    let id = enqueued(&q, "Halo", 0).await;
    assert!(
        q.store().unlogged(10).await.unwrap().is_empty(),
        "pending jobs have no outcome"
    );
    q.lease_next("w", &lane(), 1, 100).await.unwrap().unwrap();
    let job = q.finish(&id, "w", sent(&id), 2).await.unwrap().unwrap();
    assert_eq!(q.store().unlogged(10).await.unwrap().len(), 1);
    // A mark for an older version of the job does not count.
    q.store()
        .mark_logged(vec![(id.clone(), job.updated_at - 1)], 3)
        .await
        .unwrap();
    assert_eq!(q.store().unlogged(10).await.unwrap().len(), 1);
    q.store()
        .mark_logged(vec![(id.clone(), job.updated_at)], 3)
        .await
        .unwrap();
    assert!(q.store().unlogged(10).await.unwrap().is_empty());
}

async fn each_account_leases_its_own_jobs_past_another_accounts_backlog(backend: Backend) {
    let accounts = Accounts::new(vec!["sd-harapan".into(), "smp-2".into()]);
    let (a, b, _store) = open_pair_for(backend, &accounts).await;
    let lanes = accounts.lanes();
    let (default, smp) = (&lanes[0], &lanes[1]);
    let job = |account: Option<&str>, message: &str| {
        new_job("081234567890", message)
            .for_account(account)
            .unwrap()
    };
    // smp-2's backlog comes first, more than a page of lease candidates.
    for i in 0..60 {
        a.enqueue(job(Some("smp-2"), &format!("smp {i:02}")), i)
            .await
            .unwrap();
    }
    let id = |enqueued: abtrack_dispatcher::queue::Enqueued| enqueued.job.id;
    let unnamed = id(a.enqueue(job(None, "unnamed"), 100).await.unwrap());
    let named = id(a
        .enqueue(job(Some("sd-harapan"), "named default"), 101)
        .await
        .unwrap());
    // The queue takes any well-formed name (an app writing to Firestore is not
    // checked at the door); no lane sends for this one.
    let stranger = id(a
        .enqueue(job(Some("sma-9"), "stranger"), 102)
        .await
        .unwrap());

    let leased = b
        .lease_next("w1", default, 1_000, 100_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (leased.id.as_str(), leased.account),
        (unnamed.as_str(), None)
    );
    let leased = b
        .lease_next("w1", default, 1_000, 100_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.id, named);
    assert_eq!(leased.account.as_deref(), Some("sd-harapan"));
    assert!(
        b.lease_next("w1", default, 1_000, 100_000)
            .await
            .unwrap()
            .is_none()
    );
    let ended = a.get(&stranger).await.unwrap().unwrap();
    assert_eq!(ended.status, JobStatus::Failed);
    let error = ended.last_error.unwrap();
    assert_eq!(error.code, "unknown_account");
    assert_eq!(
        error.message,
        "no account \"sma-9\" is configured; the accounts are: sd-harapan, smp-2"
    );

    for i in 0..60 {
        let leased = a
            .lease_next("w2", smp, 1_000, 100_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(leased.message, format!("smp {i:02}"));
        assert_eq!(leased.account.as_deref(), Some("smp-2"));
    }
    assert!(
        a.lease_next("w2", smp, 1_000, 100_000)
            .await
            .unwrap()
            .is_none()
    );

    // Each account's job list: smp-2's own; the default account's, those naming it or
    // none (read page by page past smp-2's in Firestore); the stranger is neither's.
    let listed = a.list(&[], Some(smp), 100).await.unwrap();
    assert_eq!(listed.len(), 60);
    assert!(listed.iter().all(|j| j.account.as_deref() == Some("smp-2")));
    let mut listed: Vec<String> = a
        .list(&[], Some(default), 5)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    listed.sort();
    let mut own = vec![unnamed.clone(), named.clone()];
    own.sort();
    assert_eq!(listed, own);
    assert_eq!(a.list(&[], None, 100).await.unwrap().len(), 63);

    // Each account's counts: smp-2's own; the default account's, what the others
    // leave (the stranger's failure among them).
    let counts = a.all_counts(&accounts).await.unwrap();
    let of = |processing, failed| Counts {
        processing,
        failed,
        ..Counts::default()
    };
    assert_eq!(counts.total, of(62, 1));
    assert_eq!(
        counts.accounts,
        vec![
            ("sd-harapan".to_owned(), of(2, 1)),
            ("smp-2".to_owned(), of(60, 0))
        ]
    );
    let single = Accounts::new(vec!["sd-harapan".into()]);
    assert!(a.all_counts(&single).await.unwrap().accounts.is_empty());

    // A repeated id must repeat the account too.
    let mut again = job(Some("smp-2"), "unnamed");
    again.id = Some(unnamed);
    let err = a.enqueue(again, 200).await.unwrap_err().to_string();
    assert!(err.contains("a different job with id"), "{err}");
}

async fn a_search_pages_newest_first_by_number_status_account_id_and_date(backend: Backend) {
    let accounts = Accounts::new(vec!["sd-harapan".into(), "smp-2".into()]);
    let (q, _, _store) = open_pair_for(backend, &accounts).await;
    let lanes = accounts.lanes();
    // 30 jobs, one a time unit apart: every third to one parent, written three ways;
    // every fifth for smp-2.
    let forms = ["0812-3456-7890", "+62 812 3456 7890", "6281234567890"];
    let mut ids = Vec::new();
    for n in 0..30i64 {
        let to = if n % 3 == 0 {
            forms[(n / 3 % 3) as usize].to_owned()
        } else {
            format!("0813000000{n:02}")
        };
        let account = (n % 5 == 0).then_some("smp-2");
        let job = NewJob::validate(None, &to, &format!("m{n}"), None, "62")
            .unwrap()
            .for_account(account)
            .unwrap();
        ids.push(q.enqueue(job, 1_000 + n).await.unwrap().job.id);
    }
    // The default account's three oldest jobs failed, one of them the parent's.
    for n in [1, 2, 3] {
        let leased = q
            .lease_next("w", &lanes[0], 2_000, 10_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(leased.id, ids[n]);
        q.finish(
            &leased.id,
            "w",
            Finish::Failed(JobError::new("e", "why")),
            2_001,
        )
        .await
        .unwrap()
        .unwrap();
    }
    let all = |search: Search, page: usize| {
        let q = q.clone();
        async move {
            let mut found = Vec::new();
            let mut after = None;
            loop {
                let got = q.search(&search, after.as_deref(), page).await.unwrap();
                assert!(got.jobs.len() <= page);
                found.extend(got.jobs.into_iter().map(|j| (j.created_at, j.id)));
                match got.next {
                    Some(next) => after = Some(next),
                    None => return found,
                }
            }
        }
    };
    let expect = |pick: &dyn Fn(i64) -> bool| -> Vec<(i64, String)> {
        (0..30i64)
            .rev()
            .filter(|n| pick(*n))
            .map(|n| (1_000 + n, ids[n as usize].clone()))
            .collect()
    };

    // Every job, newest first, page by page.
    assert_eq!(all(Search::default(), 7).await, expect(&|_| true));
    // The parent, found however the app wrote the number.
    let parent = Search {
        recipient: Some("6281234567890@s.whatsapp.net".into()),
        ..Search::default()
    };
    assert_eq!(all(parent.clone(), 4).await, expect(&|n| n % 3 == 0));
    // Its failed jobs; every job by status.
    let parent_failed = Search {
        statuses: vec![JobStatus::Failed],
        ..parent.clone()
    };
    assert_eq!(all(parent_failed, 1).await, expect(&|n| n == 3));
    let pending = Search {
        statuses: vec![JobStatus::Pending],
        ..Search::default()
    };
    assert_eq!(all(pending, 10).await, expect(&|n| n > 3 || n == 0));
    // By account: smp-2's own; the default account's, those naming none.
    let smp = Search {
        account: Some(lanes[1].clone()),
        ..Search::default()
    };
    assert_eq!(all(smp, 3).await, expect(&|n| n % 5 == 0));
    let default = Search {
        account: Some(lanes[0].clone()),
        created_from: Some(1_010),
        ..Search::default()
    };
    assert_eq!(all(default, 6).await, expect(&|n| n % 5 != 0 && n >= 10));
    // By date, from inclusive, until exclusive.
    let window = Search {
        created_from: Some(1_005),
        created_until: Some(1_012),
        ..Search::default()
    };
    assert_eq!(all(window, 3).await, expect(&|n| (5..12).contains(&n)));
    // By id.
    let one = Search {
        id: Some(ids[7].clone()),
        ..Search::default()
    };
    assert_eq!(all(one, 5).await, expect(&|n| n == 7));
    let none = Search {
        id: Some("nobody".into()),
        ..Search::default()
    };
    assert!(all(none, 5).await.is_empty());
    // A cursor naming no job is refused.
    let err = q
        .search(&Search::default(), Some("nobody"), 5)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("start the search again"), "{err}");
}

async fn the_stats_count_each_hour_and_day_in_the_operators_time(backend: Backend) {
    use abtrack_dispatcher::stats::{HOUR_MS, Reason, Totals};
    let (q, _, _store) = open_pair(backend).await;
    // 2026-12-05T17:30:00Z: half past midnight on the 6th in Jakarta (UTC+7).
    let now: i64 = 1_796_491_800_000;
    let wib = 7 * HOUR_MS;
    let minute = 60_000;
    // Each job enqueued, leased and ended at `at`: sent, or failed with `code`.
    let run = |at: i64, code: Option<&'static str>| {
        let q = q.clone();
        async move {
            let id = enqueued(&q, "Halo", at).await;
            q.lease_next("w", &lane(), at, at + minute)
                .await
                .unwrap()
                .unwrap();
            let finish = match code {
                None => Finish::Sent {
                    message_id: format!("m-{id}"),
                    recipient: "6281234567890@s.whatsapp.net".into(),
                    recipient_lid: None,
                    sent_at: at,
                },
                Some(code) => Finish::Failed(JobError::new(code, format!("{code} at {at}"))),
            };
            q.finish(&id, "w", finish, at).await.unwrap().unwrap();
            id
        }
    };
    let a = run(now - 10 * minute, None).await;
    q.record_receipt(&a, Receipt::Delivered, now - 5 * minute, now - 5 * minute)
        .await
        .unwrap();
    q.record_receipt(&a, Receipt::Read, now - 2 * minute, now - 2 * minute)
        .await
        .unwrap();
    let b = run(now - 3 * HOUR_MS, None).await;
    q.record_receipt(&b, Receipt::Delivered, now - 3 * HOUR_MS + minute, now)
        .await
        .unwrap();
    run(now - 48 * HOUR_MS, None).await;
    run(now - HOUR_MS, Some("not_on_whatsapp")).await;
    run(now - 120 * HOUR_MS, Some("not_on_whatsapp")).await;
    run(now - 20 * minute, Some("e2")).await;
    // Older than 30 days: in nothing.
    run(now - 40 * 24 * HOUR_MS, Some("old")).await;

    let stats = q.stats(now, wib).await.unwrap();
    assert_eq!(stats.hours.len(), 24);
    assert_eq!(stats.days.len(), 30);
    let hour = |i: usize| {
        let b = stats.hours[i];
        (b.sent, b.delivered, b.read, b.failed)
    };
    // 17:00Z to 18:00Z, the current hour: a sent, delivered and read; e2 failed.
    assert_eq!(stats.hours[23].start, 1_796_490_000_000);
    assert_eq!(hour(23), (1, 1, 1, 1));
    assert_eq!(hour(22), (0, 0, 0, 1), "not_on_whatsapp an hour ago");
    assert_eq!(hour(20), (1, 1, 0, 0), "b three hours ago");
    let quiet: u64 = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21,
    ]
    .iter()
    .map(|i| {
        let (s, d, r, f) = hour(*i);
        s + d + r + f
    })
    .sum();
    assert_eq!(quiet, 0);
    let day = |i: usize| {
        let b = stats.days[i];
        (b.sent, b.delivered, b.read, b.failed)
    };
    // Today in Jakarta began at 17:00Z.
    assert_eq!(stats.days[29].start, 1_796_490_000_000);
    assert_eq!(day(29), (1, 1, 1, 1));
    assert_eq!(day(28), (1, 1, 0, 1));
    assert_eq!(day(27), (1, 0, 0, 0));
    assert_eq!(day(24), (0, 0, 0, 1));
    assert_eq!(
        stats.last_day,
        Totals {
            sent: 2,
            delivered: 2,
            read: 1,
            failed: 2
        }
    );
    assert_eq!(
        stats.last_month,
        Totals {
            sent: 3,
            delivered: 2,
            read: 1,
            failed: 3
        }
    );
    assert_eq!(
        stats.reasons,
        [
            Reason {
                code: "not_on_whatsapp".into(),
                count: 2,
                message: format!("not_on_whatsapp at {}", now - HOUR_MS),
            },
            Reason {
                code: "e2".into(),
                count: 1,
                message: format!("e2 at {}", now - 20 * minute),
            },
        ]
    );
    // Counted again a moment later, with one more message sent this hour: the hours
    // and days that ended come from what was counted before, the current ones anew.
    run(now - minute, None).await;
    let again = q.stats(now + minute, wib).await.unwrap();
    assert_eq!(again.hours[..23], stats.hours[..23]);
    assert_eq!(again.days[..29], stats.days[..29]);
    assert_eq!(again.hours[23].sent, 2);
    assert_eq!(again.days[29].sent, 2);
    assert_eq!(again.last_day.sent, 3);

    // In UTC the day ends elsewhere: the 5th is today, the hour before midnight
    // in Jakarta is yesterday's there but today's here.
    let utc = q.stats(now, 0).await.unwrap();
    assert_eq!(utc.days[29].start, 1_796_428_800_000);
    let (b29, b28) = (utc.days[29], utc.days[28]);
    assert_eq!((b29.sent, b29.failed), (3, 2));
    assert_eq!((b28.sent, b28.failed), (0, 0));
}

async fn media_is_kept_with_its_job_and_counts_in_its_identity(backend: Backend) {
    use abtrack_dispatcher::job::Media;
    let (q, _, _store) = open_pair(backend).await;
    let inline = Media::validate(
        None,
        Some(bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n...")),
        Some("image/png"),
        None,
    )
    .unwrap();
    let by_url = Media::validate(
        Some("https://example.org/rekap.pdf?sig=abc"),
        None,
        None,
        Some("Rekap Oktober.pdf"),
    )
    .unwrap();
    let with = |id: &str, media: &Media| {
        NewJob::validate_with_media(
            Some(id.into()),
            "081234567890",
            "",
            None,
            media.clone(),
            "62",
        )
        .unwrap()
    };
    q.enqueue(with("photo", &inline), 1).await.unwrap();
    q.enqueue(with("letter", &by_url), 2).await.unwrap();
    // The same id with other media is another job.
    assert!(
        q.enqueue(with("photo", &by_url), 3)
            .await
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
    assert!(!q.enqueue(with("photo", &inline), 4).await.unwrap().created);
    let mut leased = Vec::new();
    while let Some(job) = q.lease_next("w", &lane(), 10, 100_000).await.unwrap() {
        leased.push((job.id.clone(), job.message.clone(), job.media.clone()));
    }
    leased.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        leased,
        vec![
            ("letter".to_owned(), String::new(), Some(by_url.clone())),
            ("photo".to_owned(), String::new(), Some(inline.clone())),
        ]
    );
    assert_eq!(q.get("photo").await.unwrap().unwrap().media, Some(inline));
    // A list shows the media without needing its bytes.
    let listed = q.list(&[], None, 10).await.unwrap();
    let photo = listed.iter().find(|j| j.id == "photo").unwrap();
    let media = photo.media.as_ref().unwrap();
    assert_eq!(media.source.inline_size(), 11);
    assert_eq!(media.mime_type.as_deref(), Some("image/png"));
}
