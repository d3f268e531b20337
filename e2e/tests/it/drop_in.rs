//! An app that already writes jobs in a shape of its own: the four services on the
//! Firestore emulator, configured with the app's field names and status words, send
//! its documents unchanged and write each outcome back in its words, leaving the
//! app's other fields as they were.

use std::collections::HashMap;
use std::time::Duration;

use abtrack_dispatcher::firestore::doc::{text, value_at};
use abtrack_e2e::Cluster;
use abtrack_e2e::firestore_app::App;
use abtrack_firestore_emulator::TestFirestore;
use abtrack_firestore_emulator::indexes::Indexes;
use firestore::gcloud_sdk::google::firestore::v1::{Document, MapValue, Value, value::ValueType};

/// The README's first example: `{phone, text, state: "queued"}` and the app's own
/// words for the outcomes.
const WHATSAPP_TASKS: [(&str, &str); 8] = [
    ("FIRESTORE_FIELD_TO", "phone"),
    ("FIRESTORE_FIELD_MESSAGE", "text"),
    ("FIRESTORE_FIELD_STATUS", "state"),
    ("FIRESTORE_STATUS_PENDING", "queued"),
    ("FIRESTORE_STATUS_SENT", "terkirim"),
    ("FIRESTORE_STATUS_DELIVERED", "diterima"),
    ("FIRESTORE_STATUS_READ", "dibaca"),
    ("FIRESTORE_STATUS_FAILED", "gagal"),
];

/// A collection of its own, so the tests can share an external emulator.
fn collection(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn map(fields: &[(&str, Value)]) -> Value {
    Value {
        value_type: Some(ValueType::MapValue(MapValue {
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        })),
    }
}

fn string_at(doc: &Document, path: &str) -> Option<String> {
    match value_at(&doc.fields, path)?.value_type.as_ref()? {
        ValueType::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// Runs the dispatcher binary with `args` and `env` until it exits.
fn dispatcher(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(abtrack_e2e::bin_dir().join("dispatcher"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// What `dispatcher firestore-indexes` prints for `collection` and `env`.
fn printed_indexes(collection: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let mut env = env.to_vec();
    env.push(("FIRESTORE_COLLECTION", collection));
    let output = dispatcher(&["firestore-indexes"], &env);
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Makes the built-in emulator serve queries only as far as `indexes` allow, as
/// Cloud Firestore does; `false` for an external emulator, which cannot be told.
fn enforce(firestore: &TestFirestore, indexes: &serde_json::Value) -> bool {
    let Some(emulator) = &firestore.builtin else {
        return false;
    };
    emulator.require_indexes(Some(Indexes::from_json(&indexes.to_string()).unwrap()));
    true
}

/// Polls the documents until the word at `path` in each is the one wanted.
async fn wait_words(app: &App, path: &str, want: &[(&str, &str)]) -> HashMap<String, Document> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut docs = HashMap::new();
        for (id, _) in want {
            if let Some(doc) = app.document(id).await {
                docs.insert((*id).to_owned(), doc);
            }
        }
        let words: Vec<(&str, Option<String>)> = want
            .iter()
            .map(|(id, _)| (*id, docs.get(*id).and_then(|d| string_at(d, path))))
            .collect();
        if want
            .iter()
            .zip(&words)
            .all(|((_, word), (_, got))| got.as_deref() == Some(*word))
        {
            return docs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {want:?} at {path}; found {words:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every field the app wrote is still there with the value it wrote, but the status.
fn assert_app_fields_kept(written: &HashMap<String, Value>, doc: &Document, status: &str) {
    for (path, value) in flatten(written, "") {
        if path != status {
            assert_eq!(
                value_at(&doc.fields, &path),
                Some(&value),
                "the app's field {path} was changed: {:?}",
                doc.fields
            );
        }
    }
}

/// Leaf fields by their dotted paths.
fn flatten(fields: &HashMap<String, Value>, prefix: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (k, v) in fields {
        let path = format!("{prefix}{k}");
        match &v.value_type {
            Some(ValueType::MapValue(m)) => out.extend(flatten(&m.fields, &format!("{path}."))),
            _ => out.push((path, v.clone())),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_writing_phone_text_and_state_queued_is_served_in_its_own_words() {
    let firestore = TestFirestore::from_env();
    let collection = collection("whatsapp_tasks");
    let mut env = WHATSAPP_TASKS.to_vec();
    env.push(("WA_DRY_RUN_RECEIPTS", "true"));
    // Only the indexes printed for this shape exist: every query the services run
    // must be served by them.
    enforce(&firestore, &printed_indexes(&collection, &env));
    let cluster = Cluster::start_firestore(&firestore.host, &collection, &env).await;
    let app = App::connect_shaped(&firestore.host, &collection, &env).await;
    let jobs = [
        ("task-1", "0812-3456-7890", "Ananda Budi hadir pukul 07.02"),
        ("task-2", "+62 812 3456 7891", "Ananda Sari izin hari ini"),
        ("task-3", "12", "nomor yang salah"),
    ];
    let mut written = HashMap::new();
    for (id, phone, message) in jobs {
        let fields = HashMap::from([
            ("phone".to_owned(), text(phone)),
            ("text".to_owned(), text(message)),
            ("state".to_owned(), text("queued")),
            ("kelas".to_owned(), text("7B")),
            ("sentBy".to_owned(), text("guru-piket")),
        ]);
        app.write_document(id, fields.clone()).await;
        written.insert(id, fields);
    }
    let docs = wait_words(
        &app,
        "state",
        &[
            ("task-1", "dibaca"),
            ("task-2", "dibaca"),
            ("task-3", "gagal"),
        ],
    )
    .await;
    for (id, doc) in &docs {
        assert_app_fields_kept(&written[id.as_str()], doc, "state");
        assert!(
            !doc.fields.contains_key("status") && !doc.fields.contains_key("to"),
            "no field in the default shape was added: {:?}",
            doc.fields
        );
    }
    for id in ["task-1", "task-2"] {
        let doc = &docs[id];
        for field in ["sentAt", "deliveredAt", "readAt", "messageId", "attempts"] {
            assert!(doc.fields.contains_key(field), "{id} has {field}");
        }
    }
    assert_eq!(
        string_at(&docs["task-3"], "lastError.code").as_deref(),
        Some("invalid_document"),
        "{:?}",
        docs["task-3"].fields
    );
    assert!(
        string_at(&docs["task-3"], "lastError.message")
            .unwrap()
            .starts_with("phone: "),
        "the error names the app's field: {:?}",
        docs["task-3"].fields
    );
    // Each message went out once, to the number and with the text the app wrote.
    let lines = cluster.dry_run_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (id, to, message) in [
        ("task-1", "6281234567890", jobs[0].2),
        ("task-2", "6281234567891", jobs[1].2),
    ] {
        let line = lines.iter().find(|l| l["job_id"] == id).unwrap();
        assert_eq!(line["to"], format!("{to}@s.whatsapp.net"));
        assert_eq!(line["text"], message);
    }
    // The counts the dashboard shows read the app's words.
    let counts = app.counts().await;
    assert_eq!((counts.read, counts.failed, counts.pending), (2, 1, 0));
    // Searches are served by the printed indexes: by number (written at the first
    // attempt, however the app wrote it), by status, and every job.
    for (query, found) in [
        ("phone=081234567890", vec!["task-1"]),
        ("status=read", vec!["task-2", "task-1"]),
        ("status=failed&phone=6281234567891", vec![]),
        ("", vec!["task-3", "task-2", "task-1"]),
    ] {
        let page = cluster.get(&format!("/api/jobs?{query}")).await;
        let ids: Vec<&str> = page["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {page}"))
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, found, "{query}: {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_the_recipient_in_a_nested_map_is_served_and_its_maps_kept() {
    let firestore = TestFirestore::from_env();
    let collection = collection("notif_queue");
    let env = [
        ("FIRESTORE_FIELD_TO", "payload.phone"),
        ("FIRESTORE_FIELD_MESSAGE", "payload.body"),
        ("FIRESTORE_FIELD_CREATED_AT", "meta.created"),
        ("FIRESTORE_FIELD_STATUS", "meta.state"),
        ("FIRESTORE_FIELD_SENT_AT", "wa.sentAt"),
        ("FIRESTORE_FIELD_MESSAGE_ID", "wa.id"),
        ("FIRESTORE_FIELD_ATTEMPTS", "wa.attempts"),
        ("FIRESTORE_FIELD_LAST_ERROR", "wa.error"),
        ("FIRESTORE_STATUS_PENDING", "new,retry"),
        ("FIRESTORE_STATUS_SENT", "done"),
    ];
    let cluster = Cluster::start_firestore(&firestore.host, &collection, &env).await;
    let app = App::connect_shaped(&firestore.host, &collection, &env).await;
    let mut written = HashMap::new();
    for (n, state) in ["new", "retry", "new"].into_iter().enumerate() {
        let id = format!("n-{n}");
        let fields = HashMap::from([
            (
                "payload".to_owned(),
                map(&[
                    ("phone", text(&format!("08123456780{n}"))),
                    ("body", text(&format!("Rapor semester {n}"))),
                    ("studentId", text(&format!("S-{n}"))),
                ]),
            ),
            (
                "meta".to_owned(),
                map(&[
                    ("state", text(state)),
                    (
                        "created",
                        abtrack_dispatcher::firestore::doc::ts(1_000 + n as i64),
                    ),
                    ("school", text("SD Harapan")),
                ]),
            ),
        ]);
        app.write_document(&id, fields.clone()).await;
        written.insert(id, fields);
    }
    let ids: Vec<String> = written.keys().cloned().collect();
    let want: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "done")).collect();
    let docs = wait_words(&app, "meta.state", &want).await;
    for (id, doc) in &docs {
        assert_app_fields_kept(&written[id], doc, "meta.state");
        assert!(
            value_at(&doc.fields, "wa.sentAt").is_some()
                && string_at(doc, "wa.id").is_some_and(|m| !m.is_empty()),
            "the outcome is in the app's nested map: {:?}",
            doc.fields
        );
        assert!(!doc.fields.contains_key("sentAt") && !doc.fields.contains_key("status"));
    }
    let sends = cluster.sends();
    assert_eq!(sends.len(), 3, "{sends:?}");
    assert!(sends.values().all(|n| *n == 1), "{sends:?}");
    // Sent in the app's order (meta.created), each with its own text.
    let lines = cluster.dry_run_lines();
    let order: Vec<&str> = lines.iter().filter_map(|l| l["job_id"].as_str()).collect();
    assert_eq!(order, ["n-0", "n-1", "n-2"]);
    assert_eq!(lines[1]["text"], "Rapor semester 1");
}

#[test]
fn bad_mappings_exit_64_with_one_line_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("FIRESTORE_FIELD_MESSAGE", "phone"),
                ("FIRESTORE_FIELD_TO", "phone"),
            ],
            "FIRESTORE_FIELD_MESSAGE",
        ),
        (
            &[
                ("FIRESTORE_FIELD_TO", "payload"),
                ("FIRESTORE_FIELD_MESSAGE", "payload.text"),
            ],
            "FIRESTORE_FIELD_MESSAGE",
        ),
        (
            &[("FIRESTORE_FIELD_STATUS", "app-state")],
            "FIRESTORE_FIELD_STATUS",
        ),
        (
            &[
                ("FIRESTORE_STATUS_SENT", "done"),
                ("FIRESTORE_STATUS_FAILED", "done"),
            ],
            "FIRESTORE_STATUS_FAILED",
        ),
        (
            &[("FIRESTORE_STATUS_PENDING", "queued,processing")],
            "FIRESTORE_STATUS_PENDING",
        ),
    ];
    for (env, var) in cases {
        // The mapping is checked before Firestore is reached: the address is never used.
        let mut env = env.to_vec();
        env.push(("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9"));
        let output = dispatcher(&[], &env);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(64), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{env:?}: {stderr}");
        assert!(stderr.contains(&format!("{var}=")), "{env:?}: {stderr}");
    }
}

#[test]
fn the_indexes_printed_follow_the_collection_and_field_names() {
    let printed = printed_indexes(
        "whatsapp_tasks",
        &[
            ("FIRESTORE_FIELD_STATUS", "meta.state"),
            ("FIRESTORE_FIELD_CREATED_AT", "meta.created"),
            ("FIRESTORE_FIELD_ACCOUNT", "meta.sekolah"),
        ],
    );
    let indexes = printed["indexes"].as_array().unwrap();
    assert_eq!(indexes.len(), 12);
    for index in indexes {
        assert_eq!(index["collectionGroup"], "whatsapp_tasks");
    }
    for index in &indexes[..10] {
        assert_eq!(index["fields"][0]["fieldPath"], "meta.state");
    }
    // The stats, then the searches: by status, by number, by account, newest
    // created first.
    assert_eq!(indexes[8]["fields"][1]["fieldPath"], "sentAt");
    assert_eq!(indexes[9]["fields"][1]["fieldPath"], "meta.created");
    assert_eq!(indexes[9]["fields"][1]["order"], "DESCENDING");
    assert_eq!(indexes[10]["fields"][0]["fieldPath"], "recipient");
    assert_eq!(indexes[11]["fields"][0]["fieldPath"], "meta.sekolah");
    assert_eq!(indexes[11]["fields"][1]["fieldPath"], "meta.created");
    assert_eq!(indexes[0]["fields"][1]["fieldPath"], "meta.created");
    assert_eq!(indexes[4]["fields"][1]["fieldPath"], "updatedAt");
    assert_eq!(indexes[6]["fields"][1]["fieldPath"], "meta.sekolah");
    assert_eq!(indexes[6]["fields"][2]["fieldPath"], "meta.created");
    assert_eq!(indexes[7]["fields"][1]["fieldPath"], "meta.sekolah");
    assert_eq!(indexes[7]["fields"][2]["order"], "DESCENDING");
}

#[test]
fn a_missing_index_stops_the_dispatcher_with_exit_64_and_one_line_naming_the_query() {
    let firestore = TestFirestore::from_env();
    let collection = collection("whatsapp_tasks");
    let env = [
        ("FIRESTORE_FIELD_STATUS", "state"),
        ("FIRESTORE_FIELD_UPDATED_AT", "changed"),
    ];
    let mut indexes = printed_indexes(&collection, &env);
    // Drop the index of the job list (state, changed descending).
    indexes["indexes"]
        .as_array_mut()
        .unwrap()
        .retain(|i| i["fields"][1]["order"] != "DESCENDING");
    if !enforce(&firestore, &indexes) {
        println!("skipped: an external emulator does not enforce indexes");
        return;
    }
    let mut env = env.to_vec();
    env.extend([
        ("FIRESTORE_EMULATOR_HOST", firestore.host.as_str()),
        ("FIRESTORE_COLLECTION", collection.as_str()),
        ("DISPATCHER_ADDR", "127.0.0.1:0"),
    ]);
    let output = dispatcher(&[], &env);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("dispatcher: Firestore has no index for the job list in collection")
            && last.contains("state ASC,changed DESC")
            && last.contains("dispatcher firestore-indexes"),
        "{stderr}"
    );
}

#[test]
fn with_several_accounts_the_index_of_one_accounts_jobs_is_checked_too() {
    let firestore = TestFirestore::from_env();
    let collection = collection("notifications");
    let mut indexes = printed_indexes(&collection, &[]);
    indexes["indexes"]
        .as_array_mut()
        .unwrap()
        .retain(|i| i["fields"][1]["fieldPath"] != "account");
    if !enforce(&firestore, &indexes) {
        println!("skipped: an external emulator does not enforce indexes");
        return;
    }
    let env = [
        ("FIRESTORE_EMULATOR_HOST", firestore.host.as_str()),
        ("FIRESTORE_COLLECTION", collection.as_str()),
        ("DISPATCHER_ADDR", "127.0.0.1:0"),
        (
            "DISPATCHER_ACCOUNTS",
            "sd-harapan=http://127.0.0.1:9,smp-2=http://127.0.0.1:10",
        ),
    ];
    let output = dispatcher(&[], &env);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("dispatcher: Firestore has no index for the jobs of one account")
            && last.contains("account ASC,status ASC,createdAt ASC"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_documents_move_to_the_apps_archive_once_the_logger_holds_them() {
    let firestore = TestFirestore::from_env();
    let collection = collection("whatsapp_tasks");
    let archive = format!("{collection}_done");
    let mut env = WHATSAPP_TASKS.to_vec();
    env.extend([
        ("FIRESTORE_FINISHED", "move"),
        ("FIRESTORE_FINISHED_COLLECTION", archive.as_str()),
        ("WA_DRY_RUN_RECEIPTS", "true"),
    ]);
    let cluster = Cluster::start_firestore(&firestore.host, &collection, &env).await;
    let app = App::connect_shaped(&firestore.host, &collection, &env).await;
    let done = App::connect_shaped(&firestore.host, &archive, &env).await;
    let ids = ["t-1", "t-2", "t-3"];
    for id in ids {
        let fields = HashMap::from([
            ("phone".to_owned(), text("0812-3456-7890")),
            ("text".to_owned(), text("Halo")),
            ("state".to_owned(), text("queued")),
            ("kelas".to_owned(), text("7B")),
        ]);
        app.write_document(id, fields).await;
    }
    // Sent, logged, moved; the read receipts follow the documents.
    let want: Vec<(&str, &str)> = ids.iter().map(|id| (*id, "dibaca")).collect();
    let moved = wait_words(&done, "state", &want).await;
    for doc in moved.values() {
        assert_eq!(string_at(doc, "kelas").as_deref(), Some("7B"));
        assert!(
            value_at(&doc.fields, "loggedAt").is_some(),
            "{:?}",
            doc.fields
        );
    }
    let left = app.counts().await;
    assert_eq!(
        (left.pending, left.processing, left.sent, left.read),
        (0, 0, 0, 0),
        "nothing left in the app's collection"
    );
    assert_eq!(
        cluster.outbox_records(),
        3,
        "the logger holds every outcome"
    );
    assert_eq!(cluster.sends().len(), 3);
}
