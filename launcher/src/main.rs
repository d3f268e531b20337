//! `abtrack-notify`: runs the four AbTrack Notify services in this terminal or window.

#[tokio::main]
async fn main() {
    let code = abtrack_launcher::run(std::env::args().skip(1)).await;
    std::process::exit(code);
}
