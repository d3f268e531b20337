//! `run()` returns only once every task it spawned has stopped, counted on the
//! runtime it ran on, with a `Watch` stream open across the shutdown.

use abtrack_proto::dispatcher::v1::{WatchRequest, dispatcher_client::DispatcherClient};
use abtrack_proto::tasks::{count_service_tasks, hold_stream};

#[test]
fn run_returns_only_after_every_task_it_spawned_stopped() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the gateway and logger links keep retrying.
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let data = dir.path().display().to_string();
    let config = abtrack_dispatcher::Config::from_lookup(|k| match k {
        "DISPATCHER_DATA_DIR" => Some(data.clone()),
        "DISPATCHER_GATEWAY_URL" | "DISPATCHER_LOGGER_URL" => Some(nowhere.clone()),
        _ => None,
    })
    .unwrap();
    let counts = count_service_tasks(
        move |listener, shutdown| async move {
            abtrack_dispatcher::run(config, listener, shutdown)
                .await
                .unwrap();
        },
        move |addr, ready| {
            hold_stream(addr, ready, |channel| async move {
                DispatcherClient::new(channel).watch(WatchRequest {}).await
            })
        },
    );
    // The worker, the sweeper, the counts, both links, the readiness mirror, the
    // Watch stream's feeder and the server's connection.
    assert!(counts.while_serving >= 8, "{counts:?}");
    assert_eq!(counts.after_run, 0, "{counts:?}");
}
