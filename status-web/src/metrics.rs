//! `GET /metrics` in the Prometheus text format (0.0.4), rendered from the snapshot
//! with `prometheus-client`: each scrape registers the snapshot's values, already
//! counted, and the crate writes them (names, label escaping, the histogram's
//! cumulative buckets).

use std::fmt;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use abtrack_proto::gateway::v1::ConnectionStatus;

use crate::AppState;
use crate::snapshot::{PICKUP_BUCKETS, Service, Snapshot};

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = render(&state.snapshot.borrow());
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
}

type Labels = Vec<(&'static str, String)>;

/// One metric's values, one per label set, in the order given (a `Family` would
/// hash them into a different order at every scrape).
#[derive(Debug)]
struct Series<M>(Vec<(Labels, M)>);

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Series<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, metric) in &self.0 {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// `label="value"` series of gauges.
fn gauges<V: Into<u64>>(
    label: &'static str,
    values: impl IntoIterator<Item = (String, V)>,
) -> Series<ConstGauge<u64>> {
    Series(
        values
            .into_iter()
            .map(|(value, n)| (vec![(label, value)], ConstGauge::new(n.into())))
            .collect(),
    )
}

/// The pickup latency as status-web counted it: per-bucket counts, their sum and
/// count.
#[derive(Debug)]
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

pub fn render(s: &Snapshot) -> String {
    let mut registry = Registry::default();
    let c = &s.queue.counts;
    registry.register(
        "abtrack_jobs",
        "Jobs in the queue by status",
        gauges(
            "status",
            c.by_status()
                .map(|(status, count)| (status.to_owned(), count)),
        ),
    );
    registry.register(
        "abtrack_jobs_delivery_overdue",
        "Sent jobs with no delivery receipt within WA_DELIVERY_TIMEOUT_SECS",
        ConstGauge::new(c.delivery_overdue),
    );
    // Counters: the text format names them `<name>_total`.
    registry.register(
        "abtrack_sends",
        "Jobs seen turning sent since status-web started",
        ConstCounter::new(s.stats.sends),
    );
    registry.register(
        "abtrack_failures",
        "Jobs seen turning failed since status-web started, by error code",
        Series(
            s.stats
                .failures
                .iter()
                .map(|(code, count)| (vec![("code", code.clone())], ConstCounter::new(*count)))
                .collect(),
        ),
    );
    registry.register(
        "abtrack_pickup_latency_seconds",
        "Time from a job being due to its first lease",
        Histogram {
            sum: s.stats.pickup_sum,
            count: s.stats.pickup_count,
            buckets: PICKUP_BUCKETS
                .into_iter()
                .zip(s.stats.pickup_buckets)
                .collect(),
        },
    );
    // Every status (and `unknown`), so the gauge has a stable set of series.
    let states = std::iter::once(ConnectionStatus::Unspecified).chain(ConnectionStatus::ALL);
    registry.register(
        "abtrack_gateway_state",
        "1 for the WhatsApp connection's current state",
        gauges(
            "state",
            states
                .map(ConnectionStatus::name)
                .map(|state| (state.to_owned(), s.gateway.status == state)),
        ),
    );
    registry.register(
        "abtrack_account_connected",
        "1 when the account's WhatsApp connection is connected",
        gauges(
            "account",
            s.accounts.iter().map(|a| {
                (
                    a.name.clone(),
                    a.service.up && a.gateway.status == "connected",
                )
            }),
        ),
    );
    registry.register(
        "abtrack_account_ready",
        "1 when the dispatcher sends the account's jobs (its gateway is linked and reachable)",
        gauges(
            "account",
            s.accounts.iter().map(|a| (a.name.clone(), a.ready)),
        ),
    );
    registry.register(
        "abtrack_account_jobs",
        "Jobs of each account by status (with several accounts; the default account's include jobs naming none)",
        Series(
            s.accounts
                .iter()
                .filter_map(|a| Some((a, a.counts?)))
                .flat_map(|(a, c)| {
                    c.by_status().map(|(status, n)| {
                        (
                            vec![("account", a.name.clone()), ("status", status.to_owned())],
                            ConstGauge::new(n),
                        )
                    })
                })
                .collect(),
        ),
    );
    registry.register(
        "abtrack_account_sent_last_day",
        "Messages WhatsApp's server accepted from the account in the last 24 hours",
        gauges(
            "account",
            s.accounts
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.gateway.pacing.as_ref()?.sent_last_day))),
        ),
    );
    registry.register(
        "abtrack_account_daily_cap",
        "Most sends the account's gateway allows in any 24 hours (WA_DAILY_CAP); 0 means no cap",
        gauges(
            "account",
            s.accounts
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.gateway.pacing.as_ref()?.daily_cap))),
        ),
    );
    registry.register(
        "abtrack_logger_backlog",
        "Outcome records not yet written to Google Sheets",
        ConstGauge::new(s.logger.backlog),
    );
    registry.register(
        "abtrack_queue_paused",
        "1 when an operator paused the queue",
        ConstGauge::new(u64::from(s.queue.paused)),
    );
    let services = &s.services;
    registry.register(
        "abtrack_service_up",
        "1 when status-web is subscribed to the service's Watch stream",
        gauges(
            "service",
            [
                (Service::Dispatcher, services.dispatcher.up),
                (Service::Gateway, services.gateway.up),
                (Service::Logger, services.logger.up),
            ]
            .map(|(service, up)| (service.name().to_owned(), up)),
        ),
    );
    // Every service, so the gauges have a stable set of series.
    let of_service = |service: &'static str| s.notices.iter().filter(move |n| n.service == service);
    registry.register(
        "abtrack_notices",
        "Notices the service shows: a data file moved aside at start (until an operator dismisses it), a full disk (while it lasts)",
        gauges(
            "service",
            Service::ALL
                .map(Service::name)
                .map(|service| (service.to_owned(), of_service(service).count() as u64)),
        ),
    );
    registry.register(
        "abtrack_disk_full",
        "1 while the service cannot write a data file because its disk is full",
        gauges(
            "service",
            Service::ALL.map(Service::name).map(|service| {
                let full = of_service(service).any(|n| n.kind == "disk_full");
                (service.to_owned(), full)
            }),
        ),
    );
    if let Some(launcher) = &s.launcher {
        registry.register(
            "abtrack_service_restarts",
            "Times the launcher restarted the service since the launcher started (STATUS_WEB_LAUNCHER_FILE)",
            gauges(
                "service",
                launcher
                    .services
                    .iter()
                    .map(|service| (service.name.clone(), service.restarts)),
            ),
        );
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{CountsView, PacingView};
    use abtrack_proto::dispatcher::v1 as dpb;
    use prost_types::Timestamp;

    fn job(id: &str, status: dpb::JobStatus, attempts: u32, code: &str) -> dpb::DispatcherEvent {
        dpb::DispatcherEvent {
            event: Some(dpb::dispatcher_event::Event::Job(dpb::Job {
                id: id.into(),
                to: "081234567890".into(),
                status: status as i32,
                attempts,
                created_at: Some(Timestamp {
                    seconds: 100,
                    nanos: 0,
                }),
                updated_at: Some(Timestamp {
                    seconds: 102,
                    nanos: 0,
                }),
                last_error: (!code.is_empty()).then(|| dpb::JobError {
                    code: code.into(),
                    message: "x".into(),
                }),
                ..Default::default()
            })),
        }
    }

    /// The launcher's record of `(service, restarts)`.
    fn launcher(services: &[(&str, u64)]) -> crate::snapshot::LauncherView {
        crate::snapshot::LauncherView {
            started_at: None,
            services: services
                .iter()
                .map(|(name, restarts)| crate::snapshot::ServiceRestartsView {
                    name: (*name).into(),
                    restarts: *restarts,
                    last_exit: None,
                    last_exit_code: None,
                    last_restart_at: None,
                })
                .collect(),
        }
    }

    /// The gateway's live notice that its send log's disk is full.
    fn gateway_disk_full() -> crate::snapshot::NoticeView {
        use abtrack_proto::notices::v1 as pb;
        crate::notices::view(
            Service::Gateway,
            pb::Notice {
                id: "disk-full-sends.sqlite3".into(),
                kind: pb::notice::Kind::DiskFull.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn counts_transitions_once() {
        let mut s = Snapshot::default();
        s.apply_dispatcher(job("a", dpb::JobStatus::Processing, 1, ""));
        s.apply_dispatcher(job("a", dpb::JobStatus::Sent, 1, ""));
        s.apply_dispatcher(job("a", dpb::JobStatus::Sent, 1, ""));
        s.apply_dispatcher(job("b", dpb::JobStatus::Failed, 1, "INVALID_ARGUMENT"));
        s.gateway.status = "connected".into();
        s.services.logger.up = true;
        let text = render(&s);
        assert!(text.contains("abtrack_sends_total 1\n"), "{text}");
        assert!(text.contains("abtrack_failures_total{code=\"INVALID_ARGUMENT\"} 1\n"));
        assert!(text.contains("abtrack_pickup_latency_seconds_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("abtrack_pickup_latency_seconds_bucket{le=\"2.5\"} 1\n"));
        assert!(text.contains("abtrack_pickup_latency_seconds_count 1\n"));
        assert!(text.contains("abtrack_gateway_state{state=\"connected\"} 1\n"));
        assert!(text.contains("abtrack_gateway_state{state=\"waiting_for_qr\"} 0\n"));
        assert!(text.contains("abtrack_service_up{service=\"sheets-logger\"} 1\n"));
        assert!(text.contains("abtrack_service_up{service=\"dispatcher\"} 0\n"));
    }

    #[test]
    fn notices_are_counted_per_service_always_all_three() {
        use abtrack_proto::notices::v1 as pb;
        let mut s = Snapshot::default();
        let text = render(&s);
        assert!(text.contains("# TYPE abtrack_notices gauge\n"), "{text}");
        for service in ["dispatcher", "wa-gateway", "sheets-logger"] {
            assert!(text.contains(&format!("abtrack_notices{{service=\"{service}\"}} 0\n")));
        }
        for (service, id) in [
            (Service::Logger, "a"),
            (Service::Logger, "b"),
            (Service::Dispatcher, "c"),
        ] {
            s.notices.push(crate::notices::view(
                service,
                pb::Notice {
                    id: id.into(),
                    ..Default::default()
                },
            ));
        }
        let text = render(&s);
        assert!(
            text.contains("abtrack_notices{service=\"sheets-logger\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("abtrack_notices{service=\"dispatcher\"} 1\n"));
        assert!(text.contains("abtrack_notices{service=\"wa-gateway\"} 0\n"));
        assert!(text.contains("abtrack_disk_full{service=\"wa-gateway\"} 0\n"));

        s.notices.push(gateway_disk_full());
        let text = render(&s);
        assert!(
            text.contains("abtrack_disk_full{service=\"wa-gateway\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("abtrack_disk_full{service=\"dispatcher\"} 0\n"));
    }

    #[test]
    fn restarts_only_with_a_launcher_record() {
        let mut s = Snapshot::default();
        assert!(!render(&s).contains("abtrack_service_restarts"));
        s.launcher = Some(launcher(&[("wa-gateway", 2), ("odd\"name\\", 0)]));
        let text = render(&s);
        assert!(
            text.contains(
                "# HELP abtrack_service_restarts Times the launcher restarted the service"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE abtrack_service_restarts gauge\n"));
        assert!(text.contains("abtrack_service_restarts{service=\"wa-gateway\"} 2\n"));
        assert!(text.contains("abtrack_service_restarts{service=\"odd\\\"name\\\\\"} 0\n"));
    }

    /// The whole text for a snapshot with every kind of series, as Prometheus reads
    /// it: the same bytes the hand-written renderer wrote before `prometheus-client`.
    #[test]
    fn the_whole_text_is_the_prometheus_format() {
        let mut s = Snapshot::for_accounts(&["default".into(), "smp-2".into()]);
        s.accounts[0].ready = true;
        s.accounts[0].service.up = true;
        s.accounts[0].gateway.status = "connected".into();
        s.accounts[0].gateway.pacing = Some(PacingView {
            min_interval_ms: 3000,
            jitter_ms: 2000,
            daily_cap: 200,
            sent_last_day: 5,
            cap_frees_at: None,
        });
        s.accounts[0].counts = Some(CountsView {
            pending: 3,
            sent: 5,
            delivery_overdue: 1,
            ..CountsView::default()
        });
        s.accounts[1].counts = Some(CountsView {
            sent: 2,
            ..CountsView::default()
        });
        s.queue.counts.pending = 3;
        s.queue.counts.sent = 7;
        s.queue.counts.delivery_overdue = 1;
        s.stats.sends = 7;
        s.stats.failures.insert("whatsapp_479".into(), 2);
        s.stats.failures.insert("odd\"co\\de\n".into(), 1);
        s.stats.pickup_buckets = [0, 1, 2, 0, 3, 0, 0, 0, 0, 1];
        s.stats.pickup_count = 8;
        s.stats.pickup_sum = 412.75;
        s.gateway.status = "connected".into();
        s.logger.backlog = 4;
        s.queue.paused = true;
        s.services.gateway.up = true;
        s.notices.push(gateway_disk_full());
        s.launcher = Some(launcher(&[("wa-gateway", 2), ("odd\"name\\", 0)]));
        assert_eq!(render(&s), EXPECTED);
    }

    const EXPECTED: &str = r#"# HELP abtrack_jobs Jobs in the queue by status.
# TYPE abtrack_jobs gauge
abtrack_jobs{status="pending"} 3
abtrack_jobs{status="processing"} 0
abtrack_jobs{status="sent"} 7
abtrack_jobs{status="delivered"} 0
abtrack_jobs{status="read"} 0
abtrack_jobs{status="failed"} 0
# HELP abtrack_jobs_delivery_overdue Sent jobs with no delivery receipt within WA_DELIVERY_TIMEOUT_SECS.
# TYPE abtrack_jobs_delivery_overdue gauge
abtrack_jobs_delivery_overdue 1
# HELP abtrack_sends_total Jobs seen turning sent since status-web started.
# TYPE abtrack_sends_total counter
abtrack_sends_total 7
# HELP abtrack_failures_total Jobs seen turning failed since status-web started, by error code.
# TYPE abtrack_failures_total counter
abtrack_failures_total{code="odd\"co\\de\n"} 1
abtrack_failures_total{code="whatsapp_479"} 2
# HELP abtrack_pickup_latency_seconds Time from a job being due to its first lease.
# TYPE abtrack_pickup_latency_seconds histogram
abtrack_pickup_latency_seconds_bucket{le="0.1"} 0
abtrack_pickup_latency_seconds_bucket{le="0.25"} 1
abtrack_pickup_latency_seconds_bucket{le="0.5"} 3
abtrack_pickup_latency_seconds_bucket{le="1"} 3
abtrack_pickup_latency_seconds_bucket{le="2.5"} 6
abtrack_pickup_latency_seconds_bucket{le="5"} 6
abtrack_pickup_latency_seconds_bucket{le="10"} 6
abtrack_pickup_latency_seconds_bucket{le="30"} 6
abtrack_pickup_latency_seconds_bucket{le="60"} 6
abtrack_pickup_latency_seconds_bucket{le="300"} 7
abtrack_pickup_latency_seconds_bucket{le="+Inf"} 8
abtrack_pickup_latency_seconds_sum 412.75
abtrack_pickup_latency_seconds_count 8
# HELP abtrack_gateway_state 1 for the WhatsApp connection's current state.
# TYPE abtrack_gateway_state gauge
abtrack_gateway_state{state="unknown"} 0
abtrack_gateway_state{state="starting"} 0
abtrack_gateway_state{state="waiting_for_qr"} 0
abtrack_gateway_state{state="waiting_for_pair_code"} 0
abtrack_gateway_state{state="connecting"} 0
abtrack_gateway_state{state="connected"} 1
abtrack_gateway_state{state="disconnected"} 0
abtrack_gateway_state{state="logged_out"} 0
abtrack_gateway_state{state="banned"} 0
abtrack_gateway_state{state="replaced"} 0
abtrack_gateway_state{state="outdated"} 0
# HELP abtrack_account_connected 1 when the account's WhatsApp connection is connected.
# TYPE abtrack_account_connected gauge
abtrack_account_connected{account="default"} 1
abtrack_account_connected{account="smp-2"} 0
# HELP abtrack_account_ready 1 when the dispatcher sends the account's jobs (its gateway is linked and reachable).
# TYPE abtrack_account_ready gauge
abtrack_account_ready{account="default"} 1
abtrack_account_ready{account="smp-2"} 0
# HELP abtrack_account_jobs Jobs of each account by status (with several accounts; the default account's include jobs naming none).
# TYPE abtrack_account_jobs gauge
abtrack_account_jobs{account="default",status="pending"} 3
abtrack_account_jobs{account="default",status="processing"} 0
abtrack_account_jobs{account="default",status="sent"} 5
abtrack_account_jobs{account="default",status="delivered"} 0
abtrack_account_jobs{account="default",status="read"} 0
abtrack_account_jobs{account="default",status="failed"} 0
abtrack_account_jobs{account="smp-2",status="pending"} 0
abtrack_account_jobs{account="smp-2",status="processing"} 0
abtrack_account_jobs{account="smp-2",status="sent"} 2
abtrack_account_jobs{account="smp-2",status="delivered"} 0
abtrack_account_jobs{account="smp-2",status="read"} 0
abtrack_account_jobs{account="smp-2",status="failed"} 0
# HELP abtrack_account_sent_last_day Messages WhatsApp's server accepted from the account in the last 24 hours.
# TYPE abtrack_account_sent_last_day gauge
abtrack_account_sent_last_day{account="default"} 5
# HELP abtrack_account_daily_cap Most sends the account's gateway allows in any 24 hours (WA_DAILY_CAP); 0 means no cap.
# TYPE abtrack_account_daily_cap gauge
abtrack_account_daily_cap{account="default"} 200
# HELP abtrack_logger_backlog Outcome records not yet written to Google Sheets.
# TYPE abtrack_logger_backlog gauge
abtrack_logger_backlog 4
# HELP abtrack_queue_paused 1 when an operator paused the queue.
# TYPE abtrack_queue_paused gauge
abtrack_queue_paused 1
# HELP abtrack_service_up 1 when status-web is subscribed to the service's Watch stream.
# TYPE abtrack_service_up gauge
abtrack_service_up{service="dispatcher"} 0
abtrack_service_up{service="wa-gateway"} 1
abtrack_service_up{service="sheets-logger"} 0
# HELP abtrack_notices Notices the service shows: a data file moved aside at start (until an operator dismisses it), a full disk (while it lasts).
# TYPE abtrack_notices gauge
abtrack_notices{service="dispatcher"} 0
abtrack_notices{service="wa-gateway"} 1
abtrack_notices{service="sheets-logger"} 0
# HELP abtrack_disk_full 1 while the service cannot write a data file because its disk is full.
# TYPE abtrack_disk_full gauge
abtrack_disk_full{service="dispatcher"} 0
abtrack_disk_full{service="wa-gateway"} 1
abtrack_disk_full{service="sheets-logger"} 0
# HELP abtrack_service_restarts Times the launcher restarted the service since the launcher started (STATUS_WEB_LAUNCHER_FILE).
# TYPE abtrack_service_restarts gauge
abtrack_service_restarts{service="wa-gateway"} 2
abtrack_service_restarts{service="odd\"name\\"} 0
"#;
}
