//! The launcher's record of restarts (`STATUS_WEB_LAUNCHER_FILE`) reaching
//! `GET /api/status` and `/metrics`: absent while the file is missing, picked up when
//! the launcher writes it, kept through a garbage file, followed when it changes.

use serde_json::{Value, json};

use crate::harness::System;

const RECORD: &str = r#"{
  "startedAt": "2026-12-01T23:30:00Z",
  "pid": 4242,
  "services": [
    {"name": "wa-gateway", "restarts": 2, "lastExit": "killed by signal 9", "lastExitCode": null, "lastRestartAt": "2026-12-01T23:31:02Z"},
    {"name": "sheets-logger", "restarts": 0, "lastExit": null, "lastExitCode": null, "lastRestartAt": null},
    {"name": "dispatcher", "restarts": 0},
    {"name": "status-web", "restarts": 1, "lastExit": "exit code 1", "lastExitCode": 1, "lastRestartAt": "2026-12-01T23:40:00Z"}
  ]
}"#;

fn restarts_of(status: &Value, name: &str) -> Option<u64> {
    status["launcher"]["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?["restarts"]
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launchers_restarts_reach_the_status_and_the_metrics() {
    let system = System::start().await;

    // No file yet: no launcher field, no restart series.
    let status = system.wait_for_status("the first status", |_| true).await;
    assert!(status.get("launcher").is_none(), "{status}");
    assert!(!system.metrics().await.contains("abtrack_service_restarts"));

    system.write_launcher_file(RECORD.as_bytes());
    let status = system
        .wait_for_status("the launcher's record", |s| s.get("launcher").is_some())
        .await;
    assert_eq!(
        status["launcher"],
        json!({
            "startedAt": "2026-12-01T23:30:00.000Z",
            "services": [
                {"name": "wa-gateway", "restarts": 2, "lastExit": "killed by signal 9", "lastExitCode": null, "lastRestartAt": "2026-12-01T23:31:02.000Z"},
                {"name": "sheets-logger", "restarts": 0, "lastExit": null, "lastExitCode": null, "lastRestartAt": null},
                {"name": "dispatcher", "restarts": 0, "lastExit": null, "lastExitCode": null, "lastRestartAt": null},
                {"name": "status-web", "restarts": 1, "lastExit": "exit code 1", "lastExitCode": 1, "lastRestartAt": "2026-12-01T23:40:00.000Z"}
            ]
        })
    );
    // The rest of the snapshot is as before.
    assert_eq!(status["services"]["gateway"]["up"], true);
    let text = system.metrics().await;
    for line in [
        "# TYPE abtrack_service_restarts gauge",
        "abtrack_service_restarts{service=\"wa-gateway\"} 2\n",
        "abtrack_service_restarts{service=\"sheets-logger\"} 0\n",
        "abtrack_service_restarts{service=\"status-web\"} 1\n",
        "abtrack_service_up{service=\"wa-gateway\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    // Garbage in between does not stop the reader: the next good record is picked
    // up. (Whether a read falls between the two writes is up to timing; that a
    // garbage file keeps the last record is checked step by step in
    // `restarts::tests`.)
    system.write_launcher_file(b"\xff\xfe\x00 not a record {{");
    system.write_launcher_file(
        RECORD
            .replace("\"restarts\": 2", "\"restarts\": 3")
            .as_bytes(),
    );
    let status = system
        .wait_for_status("the third restart", |s| {
            restarts_of(s, "wa-gateway") == Some(3)
        })
        .await;
    assert_eq!(restarts_of(&status, "status-web"), Some(1));
    assert!(
        system
            .metrics()
            .await
            .contains("abtrack_service_restarts{service=\"wa-gateway\"} 3\n")
    );

    // The file gone: no launcher again.
    system.remove_launcher_file();
    system
        .wait_for_status("no launcher", |s| s.get("launcher").is_none())
        .await;
    assert!(!system.metrics().await.contains("abtrack_service_restarts"));
}
