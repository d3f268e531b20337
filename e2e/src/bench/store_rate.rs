//! The stores' own limit: how many jobs per second each queue store takes when the
//! dispatcher's own queue code does nothing but a job's writes, one job after the
//! other, with nothing else running.

use std::time::{Duration, Instant};

use abtrack_dispatcher::account::Accounts;
use abtrack_dispatcher::job::{Finish, JobStatus, NewJob};
use abtrack_dispatcher::lifecycle::{Event, Rules};
use abtrack_dispatcher::local::LocalQueue;
use abtrack_dispatcher::queue::Store;
use abtrack_proto::time::now_ms;

use crate::firestore_app::App;

/// Jobs per second of `jobs` jobs that took `elapsed`.
fn rate(jobs: usize, elapsed: Duration) -> f64 {
    jobs as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Enqueues `jobs` jobs (not timed), then takes each through its writes as the
/// dispatcher does: the lease, the outcome `sent`, the logger's mark, each with the
/// reads the store needs for it and at the durability the store gives it.
async fn jobs_per_second(store: &dyn Store, jobs: usize) -> f64 {
    for n in 0..jobs {
        let job = NewJob {
            id: Some(format!("store-{n:05}")),
            to: "081234567890".into(),
            message: "Halo".into(),
            send_at: None,
            account: None,
            recipient: None,
            media: None,
        };
        store.enqueue(job, now_ms()).await.unwrap();
    }
    let rules = Rules { max_attempts: 5 };
    let lane = &Accounts::single().lanes()[0];
    let owner = "bench".to_owned();
    let started = Instant::now();
    for _ in 0..jobs {
        let now = now_ms();
        let lease = Event::Lease {
            owner: owner.clone(),
            until: now + 120_000,
        };
        let leased = store.lease_next(&lease, lane, now, &rules).await.unwrap();
        let job = leased
            .into_iter()
            .map(|c| c.job)
            .find(|j| j.status == JobStatus::Processing)
            .expect("a pending job to lease");
        let sent = Event::Finish {
            owner: owner.clone(),
            finish: Finish::Sent {
                message_id: format!("3EB0{}", job.id),
                recipient: "6281234567890@s.whatsapp.net".into(),
                recipient_lid: None,
                sent_at: now_ms(),
            },
        };
        let written = store
            .update(&job.id, &sent, now_ms(), &rules)
            .await
            .unwrap()
            .expect("the outcome is written");
        store
            .mark_logged(vec![(job.id, written.job.updated_at)], now_ms())
            .await
            .unwrap();
    }
    rate(jobs, started.elapsed())
}

/// The local queue alone: the dispatcher's own `LocalQueue` on a fresh file, opened
/// as the dispatcher opens it.
pub async fn sqlite_jobs_per_second(jobs: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let queue = LocalQueue::open(&dir.path().join("queue.sqlite3")).unwrap();
    jobs_per_second(&queue, jobs).await
}

/// The Firestore queue alone: the dispatcher's own `FirestoreQueue` against the
/// emulator, in a collection of its own.
pub async fn emulator_jobs_per_second(host: &str, jobs: usize) -> f64 {
    let app = App::connect(host, &format!("bench-store-{}", now_ms())).await;
    jobs_per_second(app.queue(), jobs).await
}
