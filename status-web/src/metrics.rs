//! `GET /metrics` in the Prometheus text format, rendered from the snapshot.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use abtrack_proto::gateway::v1::ConnectionStatus;

use crate::AppState;
use crate::snapshot::{PICKUP_BUCKETS, Service, Snapshot};

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = render(&state.snapshot.borrow());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut add = |name: &str, kind: &str, help: &str, body: String| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{body}");
    };
    let c = &s.queue.counts;
    let mut jobs = String::new();
    for (status, n) in [
        ("pending", c.pending),
        ("processing", c.processing),
        ("sent", c.sent),
        ("delivered", c.delivered),
        ("read", c.read),
        ("failed", c.failed),
    ] {
        let _ = writeln!(jobs, "abtrack_jobs{{status=\"{status}\"}} {n}");
    }
    add(
        "abtrack_jobs",
        "gauge",
        "Jobs in the queue by status.",
        jobs,
    );
    add(
        "abtrack_jobs_delivery_overdue",
        "gauge",
        "Sent jobs with no delivery receipt within WA_DELIVERY_TIMEOUT_SECS.",
        format!("abtrack_jobs_delivery_overdue {}\n", c.delivery_overdue),
    );
    add(
        "abtrack_sends_total",
        "counter",
        "Jobs seen turning sent since status-web started.",
        format!("abtrack_sends_total {}\n", s.stats.sends),
    );
    let mut failures = String::new();
    for (code, n) in &s.stats.failures {
        let _ = writeln!(
            failures,
            "abtrack_failures_total{{code=\"{}\"}} {n}",
            escape(code)
        );
    }
    add(
        "abtrack_failures_total",
        "counter",
        "Jobs seen turning failed since status-web started, by error code.",
        failures,
    );
    let mut histogram = String::new();
    let mut cumulative = 0;
    for (bound, n) in PICKUP_BUCKETS.iter().zip(s.stats.pickup_buckets) {
        cumulative += n;
        let _ = writeln!(
            histogram,
            "abtrack_pickup_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        histogram,
        "abtrack_pickup_latency_seconds_bucket{{le=\"+Inf\"}} {}\nabtrack_pickup_latency_seconds_sum {}\nabtrack_pickup_latency_seconds_count {}",
        s.stats.pickup_count, s.stats.pickup_sum, s.stats.pickup_count
    );
    add(
        "abtrack_pickup_latency_seconds",
        "histogram",
        "Time from a job being due to its first lease.",
        histogram,
    );
    let mut gateway = String::new();
    // Every status (and `unknown`), so the gauge has a stable set of series.
    let states = std::iter::once(ConnectionStatus::Unspecified).chain(ConnectionStatus::ALL);
    for state in states.map(ConnectionStatus::name) {
        let _ = writeln!(
            gateway,
            "abtrack_gateway_state{{state=\"{state}\"}} {}",
            u8::from(s.gateway.status == state)
        );
    }
    add(
        "abtrack_gateway_state",
        "gauge",
        "1 for the WhatsApp connection's current state.",
        gateway,
    );
    add(
        "abtrack_logger_backlog",
        "gauge",
        "Outcome records not yet written to Google Sheets.",
        format!("abtrack_logger_backlog {}\n", s.logger.backlog),
    );
    add(
        "abtrack_queue_paused",
        "gauge",
        "1 when an operator paused the queue.",
        format!("abtrack_queue_paused {}\n", u8::from(s.queue.paused)),
    );
    let services = &s.services;
    add(
        "abtrack_service_up",
        "gauge",
        "1 when status-web is subscribed to the service's Watch stream.",
        format!(
            "abtrack_service_up{{service=\"dispatcher\"}} {}\nabtrack_service_up{{service=\"wa-gateway\"}} {}\nabtrack_service_up{{service=\"sheets-logger\"}} {}\n",
            u8::from(services.dispatcher.up),
            u8::from(services.gateway.up),
            u8::from(services.logger.up)
        ),
    );
    let mut notices = String::new();
    let mut disk_full = String::new();
    // Every service, so the gauges have a stable set of series.
    for service in Service::ALL.map(Service::name) {
        let of_service = || s.notices.iter().filter(|n| n.service == service);
        let open = of_service().count();
        let full = of_service().any(|n| n.kind == "disk_full");
        let _ = writeln!(
            notices,
            "abtrack_notices{{service=\"{}\"}} {open}",
            escape(service)
        );
        let _ = writeln!(
            disk_full,
            "abtrack_disk_full{{service=\"{}\"}} {}",
            escape(service),
            u8::from(full)
        );
    }
    add(
        "abtrack_notices",
        "gauge",
        "Notices the service shows: a data file moved aside at start (until an operator dismisses it), a full disk (while it lasts).",
        notices,
    );
    add(
        "abtrack_disk_full",
        "gauge",
        "1 while the service cannot write a data file because its disk is full.",
        disk_full,
    );
    if let Some(launcher) = &s.launcher {
        let mut restarts = String::new();
        for service in &launcher.services {
            let _ = writeln!(
                restarts,
                "abtrack_service_restarts{{service=\"{}\"}} {}",
                escape(&service.name),
                service.restarts
            );
        }
        add(
            "abtrack_service_restarts",
            "gauge",
            "Times the launcher restarted the service since the launcher started (STATUS_WEB_LAUNCHER_FILE).",
            restarts,
        );
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
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

        s.notices.push(crate::notices::view(
            Service::Gateway,
            pb::Notice {
                id: "disk-full-sends.sqlite3".into(),
                kind: pb::notice::Kind::DiskFull.into(),
                ..Default::default()
            },
        ));
        let text = render(&s);
        assert!(
            text.contains("abtrack_disk_full{service=\"wa-gateway\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("abtrack_disk_full{service=\"dispatcher\"} 0\n"));
    }

    #[test]
    fn restarts_only_with_a_launcher_record() {
        use crate::snapshot::{LauncherView, ServiceRestartsView};
        let mut s = Snapshot::default();
        assert!(!render(&s).contains("abtrack_service_restarts"));
        let service = |name: &str, restarts| ServiceRestartsView {
            name: name.into(),
            restarts,
            last_exit: None,
            last_exit_code: None,
            last_restart_at: None,
        };
        s.launcher = Some(LauncherView {
            started_at: None,
            services: vec![service("wa-gateway", 2), service("odd\"name\\", 0)],
        });
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
}
