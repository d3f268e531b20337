//! The services' notices: what the dispatcher, the wa-gateway and the sheets-logger
//! tell the operator: a data file that could not be read at start was moved aside and
//! a fresh one started (until someone dismisses it), or the disk is too full to write
//! a data file (while that lasts). Each service serves them
//! on `abtrack.notices.v1.Notices`; status-web lists them every [`POLL`] into the
//! snapshot (`notices` in `GET /api/status`, the dashboard's banner, `/metrics`) and
//! dismisses one for `POST /api/notices/dismiss`.
//!
//! A service that cannot be asked (down, restarting, refusing the token, too old to
//! serve `Notices`) keeps the notices it last listed, so the banner does not flap;
//! that is logged at debug only, as the watchers already report the service itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::MissedTickBehavior;
use tonic::{Request, Status};

use abtrack_proto::notices::v1::{self as pb, notices_client::NoticesClient};
use abtrack_proto::tasks::Tasks;
use abtrack_proto::time::{from_timestamp, rfc3339};
use abtrack_proto::token::TokenChannel;

use crate::snapshot::{NoticeView, Service, Snapshot};

/// How often each service is asked for its notices.
pub const POLL: Duration = Duration::from_secs(5);
const LIST_TIMEOUT: Duration = Duration::from_secs(5);
const DISMISS_TIMEOUT: Duration = Duration::from_secs(10);

/// A notice as the snapshot shows it.
pub fn view(service: Service, notice: pb::Notice) -> NoticeView {
    let at_ms = notice.at.as_ref().map(from_timestamp);
    NoticeView {
        service: service.name(),
        kind: match notice.kind() {
            pb::notice::Kind::SetAside => "set_aside",
            pb::notice::Kind::DiskFull => "disk_full",
        },
        id: notice.id,
        file: notice.file,
        kept_at: notice.kept_at,
        reason: notice.reason,
        carried_over: notice.carried_over,
        at: at_ms.map(rfc3339),
        at_ms,
    }
}

/// Oldest first; notices of the same moment by service, then by id.
fn order(notices: &mut [NoticeView]) {
    notices.sort_by(|a, b| (a.at_ms, a.service, &a.id).cmp(&(b.at_ms, b.service, &b.id)));
}

/// `current` with the notices of `service` replaced by `fresh`, in order.
pub fn replaced(
    current: &[NoticeView],
    service: Service,
    fresh: Vec<NoticeView>,
) -> Vec<NoticeView> {
    let mut notices: Vec<NoticeView> = current
        .iter()
        .filter(|n| n.service != service.name())
        .cloned()
        .chain(fresh.into_iter().map(|mut n| {
            n.service = service.name();
            n
        }))
        .collect();
    order(&mut notices);
    notices
}

/// Stores the notices just listed from `service`; returns whether the snapshot
/// changed (only then does a live update go out).
pub fn store(snapshot: &watch::Sender<Snapshot>, service: Service, fresh: Vec<NoticeView>) -> bool {
    snapshot.send_if_modified(|s| {
        let notices = replaced(&s.notices, service, fresh);
        if notices == s.notices {
            false
        } else {
            s.notices = notices;
            true
        }
    })
}

/// Drops one notice from the snapshot; returns whether it was there.
pub fn remove(snapshot: &watch::Sender<Snapshot>, service: Service, id: &str) -> bool {
    snapshot.send_if_modified(|s| {
        let before = s.notices.len();
        s.notices
            .retain(|n| !(n.service == service.name() && n.id == id));
        s.notices.len() != before
    })
}

/// What one listing of a service did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The snapshot changed.
    Changed,
    /// The same notices as before: nothing sent.
    Unchanged,
    /// The service did not answer: its last known notices stay.
    Failed,
}

struct Source {
    service: Service,
    client: NoticesClient<TokenChannel>,
    /// One listing or dismissal of this service at a time, so an answer from before
    /// a dismissal cannot overwrite the one after it.
    turn: Mutex<()>,
}

/// The three services' `Notices`, and the snapshot their notices go into.
#[derive(Clone)]
pub struct Notices {
    sources: Arc<[Source; 3]>,
    snapshot: watch::Sender<Snapshot>,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices").finish_non_exhaustive()
    }
}

impl Notices {
    pub fn new(
        snapshot: watch::Sender<Snapshot>,
        dispatcher: NoticesClient<TokenChannel>,
        gateway: NoticesClient<TokenChannel>,
        logger: NoticesClient<TokenChannel>,
    ) -> Self {
        let source = |service, client| Source {
            service,
            client,
            turn: Mutex::new(()),
        };
        Self {
            sources: Arc::new([
                source(Service::Dispatcher, dispatcher),
                source(Service::Gateway, gateway),
                source(Service::Logger, logger),
            ]),
            snapshot,
        }
    }

    fn source(&self, service: Service) -> &Source {
        self.sources
            .iter()
            .find(|s| s.service == service)
            .expect("every service has a source")
    }

    /// Lists the notices of the three services at once.
    pub async fn refresh(&self) -> [Outcome; 3] {
        let (d, g, l) = tokio::join!(
            self.refresh_service(Service::Dispatcher),
            self.refresh_service(Service::Gateway),
            self.refresh_service(Service::Logger),
        );
        [d, g, l]
    }

    /// Lists the notices of `service` into the snapshot.
    pub async fn refresh_service(&self, service: Service) -> Outcome {
        let source = self.source(service);
        let _turn = source.turn.lock().await;
        self.list(source).await
    }

    /// With `source.turn` held.
    async fn list(&self, source: &Source) -> Outcome {
        let mut request = Request::new(pb::ListNoticesRequest {});
        request.set_timeout(LIST_TIMEOUT);
        match source.client.clone().list(request).await {
            Ok(response) => {
                let fresh = response
                    .into_inner()
                    .notices
                    .into_iter()
                    .map(|n| view(source.service, n))
                    .collect();
                if store(&self.snapshot, source.service, fresh) {
                    tracing::debug!(
                        service = source.service.name(),
                        "the service's notices changed"
                    );
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                }
            }
            Err(status) => {
                tracing::debug!(
                    service = source.service.name(),
                    code = ?status.code(),
                    error = %status.message(),
                    "cannot list the service's notices; keeping the last known"
                );
                Outcome::Failed
            }
        }
    }

    /// Dismisses the notice `id` of `service`, then lists that service's notices
    /// again, so the snapshot no longer shows it when this returns. `NOT_FOUND` when
    /// the service has no such notice.
    pub async fn dismiss(&self, service: Service, id: String) -> Result<(), Status> {
        let source = self.source(service);
        let mut request = Request::new(pb::DismissNoticeRequest { id: id.clone() });
        request.set_timeout(DISMISS_TIMEOUT);
        source.client.clone().dismiss(request).await?;
        tracing::info!(service = service.name(), notice = ?id, "notice dismissed from status-web");
        // After any listing that started before the dismissal has stored its answer:
        // gone even if the next listing fails.
        let _turn = source.turn.lock().await;
        remove(&self.snapshot, service, &id);
        self.list(source).await;
        Ok(())
    }
}

/// Starts listing the services' notices every [`POLL`] until the service stops.
pub fn start(notices: Notices, tasks: &Tasks) {
    tasks.spawn(follow(notices, POLL));
}

async fn follow(notices: Notices, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        notices.refresh().await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::sync::oneshot;
    use tonic::transport::Endpoint;

    use abtrack_proto::notice;
    use abtrack_proto::time::to_timestamp;
    use abtrack_proto::token::with_token;

    use super::*;

    fn pb_notice(id: &str, at_ms: Option<i64>) -> pb::Notice {
        pb::Notice {
            id: id.into(),
            file: "/data/queue.sqlite3".into(),
            kept_at: format!("/data/damaged/{id}/queue.sqlite3"),
            reason: "file is not a database".into(),
            carried_over: 3,
            at: at_ms.map(to_timestamp),
            kind: pb::notice::Kind::SetAside.into(),
        }
    }

    fn ids(notices: &[NoticeView]) -> Vec<(&str, &str)> {
        notices.iter().map(|n| (n.service, n.id.as_str())).collect()
    }

    #[test]
    fn a_notice_is_shown_camel_case_with_its_time_like_the_rest() {
        let mut s = Snapshot::default();
        assert_eq!(
            serde_json::to_value(&s).unwrap()["notices"],
            serde_json::json!([])
        );
        s.notices.push(view(
            Service::Gateway,
            pb_notice("20261201T010203.004Z", Some(1_796_086_923_004)),
        ));
        assert_eq!(
            serde_json::to_value(&s).unwrap()["notices"],
            serde_json::json!([{
                "service": "wa-gateway",
                "id": "20261201T010203.004Z",
                "kind": "set_aside",
                "file": "/data/queue.sqlite3",
                "keptAt": "/data/damaged/20261201T010203.004Z/queue.sqlite3",
                "reason": "file is not a database",
                "carriedOver": 3,
                "at": "2026-12-01T01:02:03.004Z"
            }])
        );
        assert_eq!(view(Service::Logger, pb_notice("x", None)).at, None);
    }

    #[test]
    fn notices_are_ordered_by_time_across_services() {
        let at = |service, id, ms| view(service, pb_notice(id, Some(ms)));
        let notices = replaced(
            &[],
            Service::Logger,
            vec![at(Service::Logger, "b", 300), at(Service::Logger, "a", 100)],
        );
        let notices = replaced(
            &notices,
            Service::Dispatcher,
            vec![
                at(Service::Dispatcher, "c", 200),
                at(Service::Dispatcher, "d", 100),
            ],
        );
        assert_eq!(
            ids(&notices),
            [
                ("dispatcher", "d"),
                ("sheets-logger", "a"),
                ("dispatcher", "c"),
                ("sheets-logger", "b")
            ]
        );
        // A new listing of one service replaces only that service's notices.
        let notices = replaced(&notices, Service::Dispatcher, vec![]);
        assert_eq!(
            ids(&notices),
            [("sheets-logger", "a"), ("sheets-logger", "b")]
        );
        // The service listed wins over the one a view names.
        let notices = replaced(
            &notices,
            Service::Gateway,
            vec![at(Service::Logger, "z", 0)],
        );
        assert_eq!(ids(&notices)[0], ("wa-gateway", "z"));
        // A notice without a time comes before any with one.
        let untimed = replaced(
            &notices,
            Service::Dispatcher,
            vec![view(Service::Dispatcher, pb_notice("n", None))],
        );
        assert_eq!(ids(&untimed)[0], ("dispatcher", "n"));
    }

    #[test]
    fn only_a_change_reaches_the_snapshot() {
        let (tx, mut rx) = watch::channel(Snapshot::default());
        let listed = || vec![view(Service::Gateway, pb_notice("a", Some(5)))];
        assert!(!store(&tx, Service::Gateway, vec![]));
        assert!(!rx.has_changed().unwrap());
        assert!(store(&tx, Service::Gateway, listed()));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert!(!store(&tx, Service::Gateway, listed()));
        assert!(!store(&tx, Service::Logger, vec![]));
        assert!(!rx.has_changed().unwrap());
        assert!(
            !remove(&tx, Service::Logger, "a"),
            "another service's notice"
        );
        assert!(!remove(&tx, Service::Gateway, "b"));
        assert!(!rx.has_changed().unwrap());
        assert!(remove(&tx, Service::Gateway, "a"));
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow().notices.is_empty());
    }

    /// A `Notices` server on a port of its own, over the folder `dir`, until `stop`.
    async fn serve(dir: &Path) -> (String, oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let router =
            tonic::transport::Server::builder().add_service(notice::server([dir.to_owned()], None));
        tokio::spawn(abtrack_proto::shutdown::serve_grpc(
            router,
            listener,
            async {
                let _ = stopped.await;
            },
            Default::default(),
        ));
        (url, stop)
    }

    fn client(url: &str) -> NoticesClient<TokenChannel> {
        let channel = Endpoint::from_shared(url.to_owned())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        NoticesClient::new(with_token(channel, None))
    }

    fn damaged(dir: &Path, id: &str, carried_over: u64) -> std::path::PathBuf {
        let folder = dir.join(notice::FOLDER).join(id);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("queue.sqlite3"), b"not a database").unwrap();
        notice::write(
            &dir.join("queue.sqlite3"),
            &folder.join("queue.sqlite3"),
            "file is not a database",
            carried_over,
        )
        .unwrap();
        folder
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_that_cannot_be_asked_keeps_its_last_notices() {
        let dir = tempfile::tempdir().unwrap();
        let (url, stop) = serve(dir.path()).await;
        let nowhere = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let (tx, rx) = watch::channel(Snapshot::default());
        let notices = Notices::new(tx, client(&url), client(&nowhere), client(&nowhere));

        let mut first = notices.refresh().await;
        for _ in 0..50 {
            if first[0] != Outcome::Failed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            first = notices.refresh().await;
        }
        assert_eq!(
            first,
            [Outcome::Unchanged, Outcome::Failed, Outcome::Failed]
        );

        let folder = damaged(dir.path(), "20261201T010203.004Z", 3);
        damaged(dir.path(), "20261201T010204.000Z", 0);
        assert_eq!(
            notices.refresh_service(Service::Dispatcher).await,
            Outcome::Changed
        );
        assert_eq!(
            notices.refresh_service(Service::Dispatcher).await,
            Outcome::Unchanged
        );
        let listed = rx.borrow().notices.clone();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].service, "dispatcher");
        assert_eq!(listed[0].carried_over, 3);
        assert!(listed[0].kept_at.ends_with("queue.sqlite3"), "{listed:?}");

        // Dismissing: gone from the snapshot at once, the files stay.
        notices
            .dismiss(Service::Dispatcher, "20261201T010203.004Z".into())
            .await
            .unwrap();
        assert_eq!(
            ids(&rx.borrow().notices),
            [("dispatcher", "20261201T010204.000Z")]
        );
        assert!(folder.join("queue.sqlite3").exists() && folder.join("notice.json").exists());
        let unknown = notices
            .dismiss(Service::Dispatcher, "nope".into())
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        let down = notices
            .dismiss(Service::Logger, "x".into())
            .await
            .unwrap_err();
        assert_eq!(down.code(), tonic::Code::Unavailable, "{down:?}");

        // The service goes away: its notices stay as last listed.
        let _ = stop.send(());
        let mut outcome = Outcome::Unchanged;
        for _ in 0..50 {
            outcome = notices.refresh_service(Service::Dispatcher).await;
            if outcome == Outcome::Failed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(rx.borrow().notices.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_stops_with_the_service() {
        let (tx, _rx) = watch::channel(Snapshot::default());
        let notices = Notices::new(
            tx,
            client("http://127.0.0.1:1"),
            client("http://127.0.0.1:1"),
            client("http://127.0.0.1:1"),
        );
        let tasks = Tasks::new();
        start(notices, &tasks);
        assert_eq!(tasks.running(), 1);
        tasks.stop().await;
        assert_eq!(tasks.running(), 0);
    }
}
