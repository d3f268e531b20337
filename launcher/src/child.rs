//! One service process: started with its output prefixed by its name, stopped
//! politely and then by force, its end described in words.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio_util::task::TaskTracker;

pub type Child = Box<dyn ChildWrapper>;

/// Starts `program` with `env` on top of the launcher's own environment. Its
/// stdout and stderr lines are printed as `[name] line` on the launcher's stdout,
/// by tasks of `output` that end when the process closes them.
pub fn spawn(
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    output: &TaskTracker,
) -> std::io::Result<Child> {
    let mut command = CommandWrap::with_new(program, |command| {
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    // A job object that dies with the launcher takes every service with it: closing
    // the console window (or killing the launcher) leaves none behind.
    #[cfg(windows)]
    command.wrap(process_wrap::tokio::JobObject);
    // Its own process group: a Ctrl-C in the terminal reaches the launcher only, so a
    // service never stops (and is started again) before the launcher knows it is
    // stopping everything.
    #[cfg(unix)]
    command.wrap(process_wrap::tokio::ProcessGroup::leader());
    command.wrap(KillOnDrop);
    let mut child = command.spawn()?;
    let name: std::sync::Arc<str> = name.into();
    if let Some(out) = child.stdout().take() {
        output.spawn(prefix(name.clone(), out));
    }
    if let Some(err) = child.stderr().take() {
        output.spawn(prefix(name, err));
    }
    Ok(child)
}

/// `program args` with `env`, nothing on stdin and its output discarded; killed
/// when dropped (a check that timed out).
pub fn quiet(program: &Path, args: &[String], env: &[(String, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn prefix(name: std::sync::Arc<str>, stream: impl AsyncRead + Unpin) {
    use std::io::Write as _;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                // Each line whole in one write, so lines of two services never mix.
                let line = format!("[{name}] {text}\n");
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
            }
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, when it exited rather than being killed by a signal.
    pub code: Option<i32>,
    /// In words: `exit code 1`, `killed by signal 9 (SIGKILL)`.
    pub text: String,
}

impl Exit {
    pub fn of(status: ExitStatus) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt as _;
            if let Some(signal) = status.signal() {
                let name = match signal {
                    1 => " (SIGHUP)",
                    2 => " (SIGINT)",
                    6 => " (SIGABRT)",
                    9 => " (SIGKILL)",
                    11 => " (SIGSEGV)",
                    15 => " (SIGTERM)",
                    _ => "",
                };
                return Self {
                    code: None,
                    text: format!("killed by signal {signal}{name}"),
                };
            }
        }
        match status.code() {
            Some(code) => Self {
                code: Some(code),
                text: format!("exit code {code}"),
            },
            None => Self {
                code: None,
                text: status.to_string(),
            },
        }
    }

    /// A process whose end could not be observed.
    pub fn unknown(error: &std::io::Error) -> Self {
        Self {
            code: None,
            text: format!("ended, but its exit status could not be read ({error})"),
        }
    }
}

/// Stops `child`: asks it to stop (SIGTERM on Unix; on Windows the console's own
/// Ctrl-C or close event has reached it when `asked` is true), waits at most
/// `grace`, then kills it.
pub async fn stop(child: &mut Child, grace: Duration, asked: bool) {
    #[cfg(unix)]
    let asked = {
        const SIGTERM: i32 = 15;
        let _ = asked;
        child.signal(SIGTERM).is_ok()
    };
    if asked && tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}
