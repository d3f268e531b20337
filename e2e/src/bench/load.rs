//! One queue backend under the benchmark: the four services idle, then jobs one at a
//! time (pickup latency), then a backlog drained with pacing off (throughput, memory
//! under load, CPU time per job).

use std::time::{Duration, Instant};

use abtrack_dispatcher::queue::Store;
use abtrack_proto::dispatcher::v1::{self as pb, dispatcher_client::DispatcherClient};
use abtrack_proto::time::now_ms;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::procfs::{cpu_ticks, rss_kib, ticks_per_second};
use super::watcher::Watcher;
use crate::firestore_app::App;
use crate::{Cluster, SERVICES};
use abtrack_firestore_emulator::TestFirestore;

/// How long the services are left alone after start before "idle" is measured.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// How often memory is sampled during the drain.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// How often the queue is asked whether every outcome reached the logger.
const LOGGED_POLL: Duration = Duration::from_millis(5);

/// Which queue the dispatcher uses.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    /// The embedded SQLite queue.
    Local,
    /// Firestore, on this emulator.
    Firestore(&'a TestFirestore),
}

/// One service's figures.
#[derive(Debug, Clone, Default)]
pub struct ServiceFigures {
    pub name: &'static str,
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
    /// `utime + stime` used during the drain, in milliseconds.
    pub cpu_ms: f64,
}

/// What one backend measured.
#[derive(Debug, Clone, Default)]
pub struct LoadRun {
    pub backend: &'static str,
    /// Pickup latencies in ms (job written -> the gateway's send), sorted.
    pub latency_ms: Vec<i64>,
    /// Jobs in the drained backlog.
    pub jobs: usize,
    /// From `Resume` until every job of the backlog was sent and logged.
    pub drain: Duration,
    /// In `SERVICES` order.
    pub services: Vec<ServiceFigures>,
    /// The four together, sampled at the same moment.
    pub idle_total_kib: u64,
    pub peak_total_kib: u64,
    /// Document writes the emulator applied during the drain, when it is the built-in
    /// one (it counts them).
    pub store_writes: Option<u64>,
}

impl LoadRun {
    pub fn jobs_per_second(&self) -> f64 {
        self.jobs as f64 / self.drain.as_secs_f64().max(1e-9)
    }

    pub fn cpu_ms_total(&self) -> f64 {
        self.services.iter().map(|s| s.cpu_ms).sum()
    }
}

/// Writes jobs the way the backend's users do.
enum Writer {
    /// Through the dispatcher's `Enqueue`, as `POST /api/messages` does.
    Local(DispatcherClient<Channel>),
    /// A document written by the app, `createdAt` set by the server.
    Firestore(App),
}

impl Writer {
    async fn write(&mut self, id: &str) {
        match self {
            Writer::Local(client) => {
                client
                    .enqueue(pb::EnqueueRequest {
                        to: "081234567890".into(),
                        message: "Halo".into(),
                        send_at: None,
                        id: id.to_owned(),
                        account: String::new(),
                        media: None,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("cannot enqueue {id}: {e}"));
            }
            Writer::Firestore(app) => app.write_job(id, "081234567890", "Halo").await,
        }
    }

    /// Waits (at most 60 s) until the logger has acknowledged every finished job's
    /// outcome.
    async fn wait_all_logged(&self, cluster: &Cluster) {
        let logged_by = Instant::now() + Duration::from_secs(60);
        while !self.all_logged(cluster).await {
            assert!(
                Instant::now() < logged_by,
                "every outcome reached the logger"
            );
            tokio::time::sleep(LOGGED_POLL).await;
        }
    }

    /// Whether every finished job's outcome has been acknowledged by the logger.
    async fn all_logged(&self, cluster: &Cluster) -> bool {
        match self {
            Writer::Local(_) => cluster.unlogged_outcomes() == 0,
            Writer::Firestore(app) => app.queue().unlogged(1).await.unwrap().is_empty(),
        }
    }
}

/// Samples the services' resident memory until stopped; returns the peak of each and
/// of their sum.
struct Sampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Vec<u64>, u64)>,
}

impl Sampler {
    fn start(pids: Vec<u32>) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peaks = vec![0u64; pids.len()];
            let mut peak_total = 0;
            let mut ticker = tokio::time::interval(SAMPLE_EVERY);
            loop {
                let rss: Vec<u64> = pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();
                for (peak, now) in peaks.iter_mut().zip(&rss) {
                    *peak = (*peak).max(*now);
                }
                peak_total = peak_total.max(rss.iter().sum());
                tokio::select! {
                    _ = ticker.tick() => {},
                    _ = &mut stopped => return (peaks, peak_total),
                }
            }
        });
        Self { stop, task }
    }

    async fn finish(self) -> (Vec<u64>, u64) {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

/// Runs the four services on `backend` and measures `jobs` jobs one at a time, then
/// a backlog of `jobs` jobs.
pub async fn run(backend: Backend<'_>, jobs: usize) -> LoadRun {
    let collection = format!("bench-{}", now_ms());
    let cluster = match backend {
        Backend::Local => Cluster::start(&[]).await,
        Backend::Firestore(f) => Cluster::start_firestore(&f.host, &collection, &[]).await,
    };
    let url = format!("http://127.0.0.1:{}", cluster.ports["dispatcher"]);
    let watcher = Watcher::start(&url).await;
    let mut control = DispatcherClient::connect(url.clone()).await.unwrap();
    let mut writer = match backend {
        Backend::Local => Writer::Local(control.clone()),
        Backend::Firestore(f) => Writer::Firestore(App::connect(&f.host, &collection).await),
    };
    let pids: Vec<u32> = SERVICES
        .iter()
        .map(|s| cluster.pid(s).expect("the service runs"))
        .collect();

    // Idle: started, connected to each other, no job yet.
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle: Vec<u64> = pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();

    // Pickup latency: one job at a time into an idle queue.
    for n in 0..jobs {
        let id = format!("lat-{n:05}");
        writer.write(&id).await;
        watcher
            .wait(Duration::from_secs(30), &format!("job {id} sent"), |s| {
                s.sent.contains_key(&id)
            })
            .await;
    }
    let seen = watcher.seen();
    let sent_at = cluster.dry_run_sent_at();
    let mut latency_ms: Vec<i64> = (0..jobs)
        .map(|n| {
            let id = format!("lat-{n:05}");
            let at = sent_at
                .get(&id)
                .unwrap_or_else(|| panic!("{id} is in the dry-run log"));
            (at - seen.sent[&id]).max(0)
        })
        .collect();
    latency_ms.sort_unstable();
    // The logger's marks of these outcomes are not the backlog's writes.
    writer.wait_all_logged(&cluster).await;

    // Throughput: a backlog written while the queue is paused, then drained.
    control.pause(pb::PauseRequest {}).await.unwrap();
    for n in 0..jobs {
        writer.write(&format!("tp-{n:05}")).await;
    }
    let store_writes = || match backend {
        Backend::Local => None,
        Backend::Firestore(f) => f.builtin.as_ref().map(|e| e.writes()),
    };
    let writes_before = store_writes();
    let sampler = Sampler::start(pids.clone());
    let cpu_before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).collect();
    let started = Instant::now();
    control.resume(pb::ResumeRequest {}).await.unwrap();
    // The counts cover a watcher that fell behind on job events.
    watcher
        .wait(
            Duration::from_secs(600),
            "every job of the backlog sent",
            |s| s.sent_with_prefix("tp-") == jobs || s.counts_sent >= 2 * jobs as u64,
        )
        .await;
    writer.wait_all_logged(&cluster).await;
    let drain = started.elapsed();
    let writes_after = store_writes();
    let cpu_after: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).collect();
    let (peaks, peak_total) = sampler.finish().await;
    let ms_per_tick = 1000.0 / ticks_per_second() as f64;
    let services = SERVICES
        .iter()
        .enumerate()
        .map(|(i, name)| ServiceFigures {
            name,
            idle_rss_kib: idle[i],
            peak_rss_kib: peaks[i],
            cpu_ms: cpu_after[i].saturating_sub(cpu_before[i]) as f64 * ms_per_tick,
        })
        .collect();
    LoadRun {
        backend: match backend {
            Backend::Local => "local",
            Backend::Firestore(_) => "firestore",
        },
        latency_ms,
        jobs,
        drain,
        services,
        idle_total_kib: idle.iter().sum(),
        peak_total_kib: peak_total,
        store_writes: writes_before.zip(writes_after).map(|(b, a)| a - b),
    }
}

/// Several dispatchers on one Firestore collection: `jobs` documents written at once
/// by the app while `dispatchers` dispatchers (and one gateway) run. Jobs per second
/// from the first write until every job is sent, and the document writes the
/// built-in emulator applied meanwhile besides the jobs' creation, when it counts them.
pub async fn shared_collection(
    firestore: &TestFirestore,
    jobs: usize,
    dispatchers: usize,
) -> (f64, Option<u64>) {
    let collection = format!("bench-shared-{}", now_ms());
    let mut cluster = Cluster::start_firestore(&firestore.host, &collection, &[]).await;
    for i in 1..dispatchers {
        let label = format!("dispatcher-{i}");
        cluster.spawn_dispatcher(&label);
        cluster.wait_serving(&label).await;
    }
    let app = App::connect(&firestore.host, &collection).await;
    let writes = || firestore.builtin.as_ref().map(|e| e.writes());
    let writes_before = writes();
    let started = Instant::now();
    for n in 0..jobs {
        app.write_job(&format!("shared-{n:05}"), "081234567890", "Halo")
            .await;
    }
    app.wait_counts(Duration::from_secs(600), "every job sent", |c| {
        c.sent == jobs as u64
    })
    .await;
    let elapsed = started.elapsed();
    // The writes are counted once every outcome is logged too.
    Writer::Firestore(app).wait_all_logged(&cluster).await;
    let store_writes = writes_before
        .zip(writes())
        .map(|(before, after)| (after - before).saturating_sub(jobs as u64));
    (jobs as f64 / elapsed.as_secs_f64().max(1e-9), store_writes)
}
