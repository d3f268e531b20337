//! `run()` returns only once every task it spawned has stopped, counted on the
//! runtime it ran on, with an HTTP connection kept open across the shutdown.

use std::time::Duration;

use abtrack_proto::tasks::count_service_tasks;

#[test]
fn run_returns_only_after_every_task_it_spawned_stopped() {
    // Nothing listens there: the three watchers keep retrying.
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let config = abtrack_status_web::Config::from_lookup(|k| match k {
        "STATUS_WEB_DISPATCHER_URL" | "STATUS_WEB_GATEWAY_URL" | "STATUS_WEB_LOGGER_URL" => {
            Some(nowhere.clone())
        }
        _ => None,
    })
    .unwrap();
    let counts = count_service_tasks(
        move |listener, shutdown| async move {
            abtrack_status_web::run(config, listener, shutdown)
                .await
                .unwrap();
        },
        move |addr, ready| async move {
            let url = format!("http://{addr}/api/status");
            let http = reqwest::Client::new();
            for _ in 0..400 {
                if http.get(&url).send().await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let status = http.get(&url).send().await.unwrap().status();
            assert_eq!(status, 200);
            // The pooled connection stays open across the shutdown.
            ready.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        },
    );
    // Three watchers, the live feed's two, and the server's connection.
    assert!(counts.while_serving >= 6, "{counts:?}");
    assert_eq!(counts.after_run, 0, "{counts:?}");
}
