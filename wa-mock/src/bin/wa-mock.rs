//! `wa-mock`: the mock WhatsApp Web server as a program, so anyone can run the whole
//! system against a fake WhatsApp by hand. It serves the WhatsApp side on one address
//! and a small HTTP control API on another (`docs/testing.md`). Test support: it is
//! never part of a release archive, and only a gateway built with the `mock-server`
//! feature accepts its certificate.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use abtrack_wa_mock::MockServer;
use abtrack_wa_mock::control::{self, USAGE};

#[tokio::main]
async fn main() -> ExitCode {
    let args = match control::Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wa-mock: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mock = match MockServer::start_on(args.listen, &args.phone).await {
        Ok(mock) => Arc::new(mock),
        Err(e) => {
            eprintln!("wa-mock: cannot serve WhatsApp on {}: {e}", args.listen);
            return ExitCode::from(69);
        }
    };
    mock.set_auto_receipts(args.receipts);
    let listener = match tokio::net::TcpListener::bind(args.control).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "wa-mock: cannot serve the control API on {}: {e}",
                args.control
            );
            return ExitCode::from(69);
        }
    };
    let control = listener.local_addr().unwrap_or(args.control);
    // One line on stdout for whoever started it (a script may read the addresses).
    println!(
        "wa-mock whatsapp={} control=http://{control}/ phone={}",
        mock.url(),
        args.phone
    );
    tracing::info!(
        "start the gateway with WA_SERVER_URL={} (built with --features mock-server); GET http://{control}/ lists the control routes",
        mock.url()
    );
    tracing::info!(
        media_host = %mock.media_host(),
        "uploads go to the media host over HTTPS, whose certificate is self-made: the gateway's HTTP client must skip TLS verification"
    );
    let app = control::router(Arc::clone(&mock), control, args.gateway);
    let served = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    if let Err(e) = served.await {
        eprintln!("wa-mock: the control API stopped: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
