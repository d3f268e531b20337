//! The requests to stop everything: Ctrl-C, and the terminal or window closing.

/// Why the launcher stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Interrupted,
    Terminated,
    /// The terminal or the console window closed, or Windows is logging off or
    /// shutting down.
    Closed,
}

impl Stop {
    /// The shell's convention: 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            Stop::Interrupted => 130,
            Stop::Terminated => 143,
            Stop::Closed => 129,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Stop::Interrupted => "interrupted",
            Stop::Terminated => "terminated",
            Stop::Closed => "the window closed",
        }
    }
}

/// The registered handlers: made before any service starts, so that a signal
/// never finds the launcher without them.
pub struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
    #[cfg(windows)]
    ctrl_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    close: tokio::signal::windows::CtrlClose,
    #[cfg(windows)]
    shutdown: tokio::signal::windows::CtrlShutdown,
    #[cfg(windows)]
    logoff: tokio::signal::windows::CtrlLogoff,
}

impl Signals {
    pub fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows;
            Ok(Self {
                ctrl_c: windows::ctrl_c()?,
                ctrl_break: windows::ctrl_break()?,
                close: windows::ctrl_close()?,
                shutdown: windows::ctrl_shutdown()?,
                logoff: windows::ctrl_logoff()?,
            })
        }
    }

    pub async fn recv(&mut self) -> Stop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Stop::Interrupted,
                _ = self.terminate.recv() => Stop::Terminated,
                _ = self.hangup.recv() => Stop::Closed,
            }
        }
        #[cfg(windows)]
        {
            tokio::select! {
                _ = self.ctrl_c.recv() => Stop::Interrupted,
                _ = self.ctrl_break.recv() => Stop::Interrupted,
                _ = self.close.recv() => Stop::Closed,
                _ = self.shutdown.recv() => Stop::Closed,
                _ = self.logoff.recv() => Stop::Closed,
            }
        }
    }
}
