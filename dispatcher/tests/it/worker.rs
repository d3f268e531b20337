//! The whole dispatcher (`run`) against a scripted gateway and the real logger: the
//! outcome of every gateway answer, pausing while the gateway is not ready, and the
//! outcome records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::{Notify, oneshot, watch};
use tonic::Status;
use tonic::transport::Channel;

use abtrack_proto::dispatcher::v1::{self as dpb, dispatcher_client::DispatcherClient};
use abtrack_proto::gateway::v1::{self as gpb, gateway_server::GatewayServer};
use abtrack_proto::logger::v1::{self as lpb, sheets_logger_client::SheetsLoggerClient};
use abtrack_test_support::ScriptedGateway;

/// A gateway that answers by the message text: `ok`, `invalid`, `notfound`,
/// `internal` (always), and `unavailable-once`, `exhausted-once`, `slow-once` (that
/// answer, then success). `crash` brings the whole gateway down in the middle of the
/// call, every time.
fn scripted_gateway(
    events: watch::Receiver<Vec<gpb::GatewayEvent>>,
    crash: Arc<Notify>,
) -> ScriptedGateway {
    ScriptedGateway::new(events, move |request, call| {
        let crash = Arc::clone(&crash);
        async move {
            let first = call == 1;
            match request.message.as_str() {
                "invalid" => return Err(Status::invalid_argument("recipient contains 'x'")),
                "notfound" => return Err(Status::not_found("62812*****890 is not on WhatsApp")),
                "internal" => return Err(Status::internal("storage broke")),
                "unavailable-once" if first => {
                    return Err(Status::unavailable("WhatsApp is disconnected"));
                }
                "exhausted-once" if first => return Err(Status::resource_exhausted("pacing")),
                "slow-once" if first => tokio::time::sleep(Duration::from_millis(2500)).await,
                "crash" => {
                    crash.notify_one();
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
            Ok(())
        }
    })
}

/// The scripted gateway run as a process is: on a runtime of its own, which a `crash`
/// takes down with every connection it holds, and which comes back at once on the
/// same address, as a service manager restarts a process that died.
struct GatewayProcess {
    stop: Arc<AtomicBool>,
    crash: Arc<Notify>,
    /// How many times the gateway went down.
    crashes: Arc<AtomicU32>,
}

impl GatewayProcess {
    fn start(
        gateway: ScriptedGateway,
        crash: Arc<Notify>,
        listener: std::net::TcpListener,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let crashes = Arc::new(AtomicU32::new(0));
        let (stop_, crashes_, crash_) =
            (Arc::clone(&stop), Arc::clone(&crashes), Arc::clone(&crash));
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !stop_.load(Ordering::SeqCst) {
                let listener = match listener.take() {
                    Some(l) => l,
                    None => std::net::TcpListener::bind(addr).unwrap(),
                };
                listener.set_nonblocking(true).unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let (gateway, crash) = (gateway.clone(), Arc::clone(&crash_));
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                    let serve = tonic::transport::Server::builder()
                        .add_service(GatewayServer::new(gateway.clone()))
                        .serve_with_incoming(incoming);
                    tokio::select! {
                        _ = serve => {},
                        () = crash.notified() => {},
                    }
                });
                // Dropping the runtime drops every connection task mid-call.
                runtime.shutdown_background();
                crashes_.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            stop,
            crash,
            crashes,
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.crash.notify_one();
    }
}

pub(crate) struct Harness {
    pub(crate) dispatcher: DispatcherClient<Channel>,
    logger: SheetsLoggerClient<Channel>,
    /// The gateway's events, appended to by [`Harness::set_gateway_status`].
    gateway_status: watch::Sender<Vec<gpb::GatewayEvent>>,
    /// Send calls the gateway received, by job id.
    pub(crate) calls: Arc<Mutex<HashMap<String, u32>>>,
    gateway: GatewayProcess,
    _dir: tempfile::TempDir,
    _stops: Vec<oneshot::Sender<()>>,
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

fn stopper() -> (
    oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

impl Harness {
    /// The scripted gateway reports `status` from now on.
    fn set_gateway_status(&self, status: gpb::ConnectionStatus) {
        self.gateway_status
            .send_modify(|events| events.push(ScriptedGateway::state(status)));
    }

    async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// Starts with `extra` environment variables added or overriding the defaults.
    pub(crate) async fn start_with(extra: Vec<(&'static str, String)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut stops = Vec::new();

        let (gateway_status, status_rx) = watch::channel(vec![ScriptedGateway::state(
            gpb::ConnectionStatus::Connected,
        )]);
        let crash = Arc::new(Notify::new());
        let scripted = scripted_gateway(status_rx, Arc::clone(&crash));
        let calls = Arc::clone(&scripted.calls);
        let gl = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gateway_url = format!("http://{}", gl.local_addr().unwrap());
        let gateway = GatewayProcess::start(scripted, crash, gl);

        let (ll, logger_url) = listener().await;
        let data = dir.path().join("logger");
        let logger_config = abtrack_sheets_logger::Config::from_lookup(|k| match k {
            "SHEETS_DATA_DIR" => Some(data.display().to_string()),
            "SHEETS_CREDENTIALS" => None,
            _ => None,
        })
        .unwrap();
        let (stop, stopped) = stopper();
        stops.push(stop);
        tokio::spawn(abtrack_sheets_logger::run(logger_config, ll, stopped));

        let (dl, dispatcher_url) = listener().await;
        let mut env: HashMap<&str, String> = HashMap::from([
            (
                "DISPATCHER_DATA_DIR",
                dir.path().join("dispatcher").display().to_string(),
            ),
            ("DISPATCHER_GATEWAY_URL", gateway_url),
            ("DISPATCHER_LOGGER_URL", logger_url.clone()),
            ("DISPATCHER_LEASE_SECS", "10".into()),
            ("DISPATCHER_SEND_TIMEOUT_SECS", "1".into()),
            ("DISPATCHER_MAX_ATTEMPTS", "3".into()),
            ("DISPATCHER_BACKOFF_BASE_SECS", "0".into()),
            ("DISPATCHER_RATE_LIMIT_DELAY_SECS", "0".into()),
            ("DISPATCHER_POLL_INTERVAL_SECS", "1".into()),
        ]);
        env.extend(extra);
        let config = abtrack_dispatcher::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        let (stop, stopped) = stopper();
        stops.push(stop);
        tokio::spawn(abtrack_dispatcher::run(config, dl, stopped));

        Self {
            dispatcher: DispatcherClient::connect(dispatcher_url).await.unwrap(),
            logger: SheetsLoggerClient::connect(logger_url).await.unwrap(),
            gateway_status,
            calls,
            gateway,
            _dir: dir,
            _stops: stops,
        }
    }

    async fn enqueue(&self, message: &str) -> String {
        let request = dpb::EnqueueRequest {
            to: "081234567890".into(),
            message: message.into(),
            ..Default::default()
        };
        let response = self
            .dispatcher
            .clone()
            .enqueue(request)
            .await
            .unwrap()
            .into_inner();
        response.job.unwrap().id
    }

    async fn job(&self, id: &str) -> dpb::Job {
        self.dispatcher
            .clone()
            .get_job(dpb::GetJobRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits (at most 20 s) until the job reaches a terminal status.
    pub(crate) async fn finished(&self, id: &str) -> dpb::Job {
        for _ in 0..400 {
            let job = self.job(id).await;
            let s = job.status;
            if s == dpb::JobStatus::Sent as i32 || s == dpb::JobStatus::Failed as i32 {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish: {:?}", self.job(id).await);
    }

    async fn logger_backlog(&self) -> u64 {
        let mut stream = self
            .logger
            .clone()
            .watch(lpb::WatchRequest {})
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().unwrap().backlog
    }
}

fn error_code(job: &dpb::Job) -> &str {
    job.last_error.as_ref().map_or("", |e| e.code.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_answer_ends_the_job_as_the_architecture_says() {
    let h = Harness::start().await;
    let cases = [
        ("ok", "sent", 1, ""),
        ("invalid", "failed", 1, "invalid_argument"),
        ("notfound", "failed", 1, "not_on_whatsapp"),
        ("internal", "failed", 3, "internal"),
        ("unavailable-once", "sent", 1, ""),
        ("exhausted-once", "sent", 1, ""),
        ("slow-once", "sent", 2, ""),
    ];
    let mut ids = Vec::new();
    for (message, ..) in cases {
        ids.push(h.enqueue(message).await);
    }
    for ((message, status, attempts, code), id) in cases.iter().zip(&ids) {
        let job = h.finished(id).await;
        let got = (
            dpb::JobStatus::try_from(job.status)
                .unwrap()
                .as_str_name()
                .to_owned(),
            job.attempts,
            error_code(&job),
        );
        let want = (
            format!("JOB_STATUS_{}", status.to_uppercase()),
            *attempts,
            *code,
        );
        assert_eq!(
            (got.0.as_str(), got.1, got.2),
            (want.0.as_str(), want.1, want.2),
            "message {message:?}: {job:?}"
        );
        if *status == "sent" {
            assert_eq!(job.message_id, format!("m-{id}"));
        }
    }
    let internal = h.job(&ids[3]).await;
    assert!(
        internal
            .last_error
            .unwrap()
            .message
            .contains("gave up after 3 attempts")
    );
    // Every outcome reached the logger's outbox, once.
    for _ in 0..200 {
        if h.logger_backlog().await == cases.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.logger_backlog().await, cases.len() as u64);
    assert_eq!(h.calls.lock().unwrap()[&ids[3]], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_while_the_gateway_is_not_linked_and_go_when_it_is() {
    let h = Harness::start().await;
    h.set_gateway_status(gpb::ConnectionStatus::WaitingForQr);
    let mut watch = h
        .dispatcher
        .clone()
        .watch(dpb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    // Wait for the dispatcher to see the gateway is not ready.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(dpb::dispatcher_event::Event::State(s)) = event.event
            && !s.gateway_ready
            && s.waiting_reason.contains("waiting_for_qr")
        {
            break;
        }
    }
    let id = h.enqueue("ok").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let job = h.job(&id).await;
    assert_eq!(
        (job.status, job.attempts),
        (dpb::JobStatus::Pending as i32, 0)
    );
    assert!(
        h.calls.lock().unwrap().is_empty(),
        "nothing was sent while not linked"
    );
    h.set_gateway_status(gpb::ConnectionStatus::Connected);
    let job = h.finished(&id).await;
    assert_eq!((job.status, job.attempts), (dpb::JobStatus::Sent as i32, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pause_holds_jobs_until_resume() {
    let h = Harness::start().await;
    let mut client = h.dispatcher.clone();
    let state = client
        .pause(dpb::PauseRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(state.paused);
    let id = h.enqueue("ok").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.job(&id).await.status, dpb::JobStatus::Pending as i32);
    client.resume(dpb::ResumeRequest {}).await.unwrap();
    assert_eq!(h.finished(&id).await.status, dpb::JobStatus::Sent as i32);
    // Bad input is refused at the door with the field named.
    let err = client
        .enqueue(dpb::EnqueueRequest {
            to: "081234567890".into(),
            message: " ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::InvalidArgument, "message: is empty")
    );
    let list = client
        .list_jobs(dpb::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.jobs.len(), 1);
}

/// The worker leases the next job as soon as the gateway answered and writes the
/// outcome before it while that job is sent: on the `Watch` stream each job of a
/// backlog is `processing` before the one ahead of it is `sent`, and the last outcome
/// is written although no job follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_job_is_sent_while_the_outcome_before_it_is_written() {
    let h = Harness::start().await;
    let mut client = h.dispatcher.clone();
    client.pause(dpb::PauseRequest {}).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(h.enqueue("ok").await);
    }
    let mut events = client
        .watch(dpb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    client.resume(dpb::ResumeRequest {}).await.unwrap();
    let mut seen: Vec<(String, i32)> = Vec::new();
    let all_sent = |seen: &[(String, i32)]| {
        ids.iter()
            .all(|id| seen.contains(&(id.clone(), dpb::JobStatus::Sent as i32)))
    };
    while !all_sent(&seen) {
        let event = tokio::time::timeout(Duration::from_secs(20), events.message())
            .await
            .expect("every job sent within 20 s")
            .unwrap()
            .expect("the stream stays open");
        if let Some(dpb::dispatcher_event::Event::Job(job)) = event.event {
            seen.push((job.id, job.status));
        }
    }
    let at = |id: &str, status: dpb::JobStatus| {
        seen.iter()
            .position(|(i, s)| i == id && *s == status as i32)
            .unwrap_or_else(|| panic!("{id} {status:?} in {seen:?}"))
    };
    for pair in ids.windows(2) {
        assert!(
            at(&pair[1], dpb::JobStatus::Processing) < at(&pair[0], dpb::JobStatus::Sent),
            "{} leased before {} was written sent: {seen:?}",
            pair[1],
            pair[0]
        );
    }
    for id in &ids {
        assert_eq!(h.calls.lock().unwrap()[id], 1, "{id} sent once");
    }
}

/// A job whose every send brings the gateway down ends failed after the maximum
/// attempts, saying so, instead of being sent again ahead of every job behind it.
pub(crate) async fn a_job_that_crashes_the_gateway_ends_failed(extra: Vec<(&'static str, String)>) {
    let h = Harness::start_with(extra).await;
    let poison = h.enqueue("crash").await;
    let mut behind = Vec::new();
    for _ in 0..5 {
        behind.push(h.enqueue("ok").await);
    }
    let job = h.finished(&poison).await;
    assert_eq!(
        (job.status, job.attempts, error_code(&job)),
        (dpb::JobStatus::Failed as i32, 3, "gateway_interrupted"),
        "{job:?}"
    );
    let message = job.last_error.unwrap().message;
    assert!(
        message.contains("broke while it was sending this job")
            && message.contains("gave up after 3 attempts"),
        "{message}"
    );
    assert_eq!(h.gateway.crashes.load(Ordering::SeqCst), 3);
    for id in &behind {
        assert_eq!(h.finished(id).await.status, dpb::JobStatus::Sent as i32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_crashes_the_gateway_ends_failed_on_the_local_queue() {
    a_job_that_crashes_the_gateway_ends_failed(Vec::new()).await;
}
