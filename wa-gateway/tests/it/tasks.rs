//! `run()` returns only once every task it spawned has stopped (dry-run mode),
//! counted on the runtime it ran on, with a `Watch` stream open across the shutdown.

use abtrack_proto::gateway::v1::{WatchRequest, gateway_client::GatewayClient};
use abtrack_proto::tasks::{count_service_tasks, hold_stream};

#[test]
fn run_returns_only_after_every_task_it_spawned_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let config = abtrack_wa_gateway::Config::from_lookup(|k| match k {
        "WA_MODE" => Some("dry-run".into()),
        "WA_DATA_DIR" => Some(data.clone()),
        "WA_DRY_RUN_RECEIPTS" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    let counts = count_service_tasks(
        move |listener, shutdown| async move {
            abtrack_wa_gateway::run(config, listener, shutdown)
                .await
                .unwrap();
        },
        move |addr, ready| {
            hold_stream(addr, ready, |channel| async move {
                GatewayClient::new(channel).watch(WatchRequest {}).await
            })
        },
    );
    // Events, overdue reports, the Watch stream's feeder and the server's connection.
    assert!(counts.while_serving >= 4, "{counts:?}");
    assert_eq!(counts.after_run, 0, "{counts:?}");
}
