//! `run()` returns only once every task it spawned has stopped, counted on the
//! runtime it ran on, with a `Watch` stream open across the shutdown.

use abtrack_proto::logger::v1::{WatchRequest, sheets_logger_client::SheetsLoggerClient};
use abtrack_proto::tasks::{count_service_tasks, hold_stream};

#[test]
fn run_returns_only_after_every_task_it_spawned_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let config = abtrack_sheets_logger::Config::from_lookup(|k| match k {
        "SHEETS_DATA_DIR" => Some(data.clone()),
        // Without Sheets, the hourly pruning runs.
        "SHEETS_OUTBOX_RETENTION_DAYS" => Some("7".into()),
        _ => None,
    })
    .unwrap();
    let counts = count_service_tasks(
        move |listener, shutdown| async move {
            abtrack_sheets_logger::run(config, listener, shutdown)
                .await
                .unwrap();
        },
        move |addr, ready| {
            hold_stream(addr, ready, |channel| async move {
                SheetsLoggerClient::new(channel)
                    .watch(WatchRequest {})
                    .await
            })
        },
    );
    // The pruning, the Watch stream's feeder and the server's connection.
    assert!(counts.while_serving >= 3, "{counts:?}");
    assert_eq!(counts.after_run, 0, "{counts:?}");
}
