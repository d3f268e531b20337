//! Tracing set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` switches to
//! one JSON object per line. Every line passes [`crate::mask_numbers`] on its way
//! out, so a phone number in a library's own log line is masked too.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LOG_FORMAT, RUST_LOG};

/// Standard error, with every run of digits long enough for a phone number with its
/// country code masked.
struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter
    }
}

/// Masks what it is given (one formatted event per write) and writes it to stderr.
struct MaskingWriter;

impl Write for MaskingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(crate::mask_numbers(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter =
        EnvFilter::try_from_env(RUST_LOG.name).unwrap_or_else(|_| EnvFilter::new(RUST_LOG.default));
    let json = std::env::var(LOG_FORMAT.name).is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
