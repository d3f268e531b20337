//! Every task a service spawns has an owner: [`Tasks`] spawns them on one
//! `TaskTracker` and stops them with one `CancellationToken`, so a service's `run()`
//! returns only once all of its work has stopped.

use std::future::Future;
use std::pin::Pin;

pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a loop that runs until the service stops; it is dropped at the await
    /// point it waits on then.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Spawns work that must not be cut in half (a send in flight): it is not
    /// cancelled, and the service waits for it before `run()` returns.
    pub fn spawn_to_finish<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.tracker.spawn(task)
    }

    /// An executor for a client channel's connection tasks (tonic's
    /// `Endpoint::executor`), so they are the service's tasks too and are waited
    /// for; they end once every clone of the channel is dropped.
    pub fn executor(&self) -> TrackedExecutor {
        TrackedExecutor(self.tracker.clone())
    }

    /// The token a task can watch to stop at a point of its own choosing.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// How many spawned tasks have not ended yet.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Cancels every stoppable task and waits until all tasks, stoppable or not,
    /// have ended.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// See [`Tasks::executor`].
#[derive(Clone, Debug)]
pub struct TrackedExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// What [`count_service_tasks`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCounts {
    /// Tasks alive on the service's runtime while its client was connected.
    pub while_serving: usize,
    /// Tasks alive the moment `run()` returned.
    pub after_run: usize,
}

/// Test support for "`run()` returns only after every task it spawned stopped":
/// runs `service` (a service's `run`, given a listener on `127.0.0.1:0` and the
/// shutdown future) on a runtime of its own, and `client` (given the listener's
/// address) on another thread and runtime, as another process would. Once
/// the client sends on its channel (it has its streams open), the tasks alive on the
/// service's runtime are counted, the service is told to stop, and they are counted
/// again the moment `run()` returns. The client may keep its streams open across the
/// shutdown; it is waited for after the count.
pub fn count_service_tasks<S, C>(
    service: impl FnOnce(tokio::net::TcpListener, Pin<Box<dyn Future<Output = ()> + Send>>) -> S,
    client: impl FnOnce(std::net::SocketAddr, std::sync::mpsc::Sender<()>) -> C + Send + 'static,
) -> TaskCounts
where
    S: Future<Output = ()>,
    C: Future<Output = ()> + 'static,
{
    // One thread: a task that ended is released before `run()` is polled again, so
    // the count after it is exact.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the service");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let addr = listener.local_addr().expect("its address");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the client")
            .block_on(client(addr, ready_tx));
    });
    let counts = runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let listener = tokio::net::TcpListener::from_std(listener).expect("a Tokio listener");
        let run = service(
            listener,
            Box::pin(async move {
                let _ = stop_rx.await;
            }),
        );
        tokio::pin!(run);
        let ready = tokio::task::spawn_blocking(move || ready_rx.recv().is_ok());
        tokio::select! {
            () = &mut run => panic!("run() returned before it was told to stop"),
            ready = ready => assert!(matches!(ready, Ok(true)), "the client gave up"),
        }
        let metrics = tokio::runtime::Handle::current().metrics();
        let while_serving = metrics.num_alive_tasks();
        let _ = stop_tx.send(());
        run.await;
        TaskCounts {
            while_serving,
            after_run: metrics.num_alive_tasks(),
        }
    });
    client.join().expect("the client thread");
    counts
}

/// Test support: the client of [`count_service_tasks`] for a gRPC service. Waits
/// until `url` serves, opens a stream on a channel to it with `open` (a `Watch`),
/// reads its first message, says it is ready, then reads on until the service ends
/// the stream by stopping.
pub async fn hold_stream<T, F, Fut>(
    addr: std::net::SocketAddr,
    ready: std::sync::mpsc::Sender<()>,
    open: F,
) where
    F: FnOnce(tonic::transport::Channel) -> Fut,
    Fut: Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>>,
{
    let url = format!("http://{addr}");
    let within = std::time::Duration::from_secs(10);
    assert!(
        crate::health::wait_serving(&url, within).await,
        "{url} serves"
    );
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("a URL")
        .connect()
        .await
        .expect("a connection");
    let mut stream = open(channel).await.expect("the stream opens").into_inner();
    stream.message().await.expect("a first message");
    ready.send(()).expect("the counter waits");
    while let Ok(Some(_)) = stream.message().await {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn stop_cancels_loops_and_waits_for_work_that_must_finish() {
        let tasks = Tasks::new();
        tasks.spawn(std::future::pending());
        let finished = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&finished);
        tasks.spawn_to_finish(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            done.store(true, Ordering::SeqCst);
        });
        assert_eq!(tasks.running(), 2);
        tasks.stop().await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the send in flight finished"
        );
        assert_eq!(tasks.running(), 0);
    }
}
