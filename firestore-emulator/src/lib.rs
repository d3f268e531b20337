//! An in-memory Firestore emulator for the test suites: a tonic server of the
//! `google.firestore.v1.Firestore` calls the `firestore` crate makes, with Cloud
//! Firestore's preconditions, transaction conflicts and listen streams. It is a
//! test-support crate: no release binary depends on it.
//!
//! The server runs on its own thread and runtime, so [`Emulator::restart`] drops every
//! connection at once, as a restarted process would, while the documents are kept.
#![forbid(unsafe_code)]

pub mod indexes;
pub mod listen;
pub mod query;
pub mod service;
pub mod store;
pub mod values;

#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod google {
        pub mod firestore {
            pub mod v1 {
                tonic::include_proto!("google.firestore.v1");
            }
        }
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
        pub mod r#type {
            tonic::include_proto!("google.r#type");
        }
        pub mod api {
            tonic::include_proto!("google.api");
        }
    }
}

use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};

use crate::pb::google::firestore::v1::firestore_server::FirestoreServer;
use crate::store::Store;

/// A running emulator on a loopback port.
pub struct Emulator {
    addr: SocketAddr,
    store: Store,
    listen_broken: watch::Sender<bool>,
    server: Option<ServerThread>,
}

struct ServerThread {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Emulator {
    /// Starts an emulator on a free port of 127.0.0.1.
    pub fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mut emulator = Self {
            addr,
            store: Store::default(),
            listen_broken: watch::channel(false).0,
            server: None,
        };
        emulator.serve(listener)?;
        Ok(emulator)
    }

    /// `host:port`, the form `FIRESTORE_EMULATOR_HOST` takes.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    fn serve(&mut self, listener: std::net::TcpListener) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let service = service::Service {
            store: self.store.clone(),
            listen_broken: self.listen_broken.subscribe(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("firestore-emulator".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("a runtime for the emulator");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a listener on the runtime");
                    // As Cloud Firestore's front ends: no Nagle delay on small frames
                    // (tonic sets it only on listeners it binds itself).
                    let incoming = tokio_stream::StreamExt::map(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        |stream| {
                            let stream = stream?;
                            stream.set_nodelay(true)?;
                            Ok::<_, std::io::Error>(stream)
                        },
                    );
                    let server = tonic::transport::Server::builder()
                        .add_service(
                            FirestoreServer::new(service)
                                .max_decoding_message_size(16 * 1024 * 1024),
                        )
                        .serve_with_incoming(incoming);
                    tokio::select! {
                        result = server => if let Err(e) = result {
                            tracing::error!(error = %e, "emulator server failed");
                        },
                        _ = stopped => {},
                    }
                });
                // Dropping the runtime ends every connection task: clients see the
                // connection reset, as with a killed process.
                runtime.shutdown_background();
            })?;
        self.server = Some(ServerThread { stop, thread });
        Ok(())
    }

    /// Stops serving: every connection and stream is cut. The documents stay.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop.send(());
            let _ = server.thread.join();
        }
    }

    /// Serves again on the same address, with the documents it had.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let listener = std::net::TcpListener::bind(self.addr)?;
        self.serve(listener)
    }

    /// While true, listen streams end with UNAVAILABLE and new ones are refused.
    pub fn set_listen_broken(&self, broken: bool) {
        self.listen_broken.send_replace(broken);
    }

    /// Listen streams open now.
    pub fn listen_streams(&self) -> usize {
        self.store.listens.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Number of stored documents (all collections).
    pub fn document_count(&self) -> usize {
        self.store.lock().docs.len()
    }

    /// Document writes applied since the emulator started (restarts and
    /// [`Emulator::clear`] included): what Firestore would bill as writes.
    pub fn writes(&self) -> u64 {
        self.store.lock().writes
    }

    /// Serves queries only as far as `indexes` allow, as Cloud Firestore does
    /// (`None`: every query is served, as Google's emulator does).
    pub fn require_indexes(&self, indexes: Option<indexes::Indexes>) {
        self.store.lock().indexes = indexes;
    }

    /// Removes every document.
    pub fn clear(&self) {
        self.store.clear();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The emulator a test uses: the one `FIRESTORE_EMULATOR_HOST` names, or a built-in
/// one started for the test.
pub struct TestFirestore {
    pub host: String,
    pub builtin: Option<Emulator>,
}

impl TestFirestore {
    pub fn from_env() -> Self {
        match std::env::var("FIRESTORE_EMULATOR_HOST") {
            Ok(host) if !host.trim().is_empty() => Self {
                host: host.trim().to_owned(),
                builtin: None,
            },
            _ => {
                let emulator = Emulator::start().expect("the built-in Firestore emulator starts");
                Self {
                    host: emulator.host(),
                    builtin: Some(emulator),
                }
            }
        }
    }
}
