//! Child processes: the harness re-executes its own program (`current_exe()`) with the
//! ordinary command line, plus `OUTBOX_CRASH` to arm one crash point.
//!
//! Whether the program is `outbox-lab` or an example, it speaks the same command line: an
//! example's `main` starts with [`child_entry`], which hands a child straight to
//! [`crate::cli::main`].

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// Set on every child the harness starts.
pub const CHILD_ENV: &str = "OUTBOX_LAB_CHILD";

/// First line of an example's `main`: if this process is a harness child, run the command
/// line and return its exit code.
pub fn child_entry() -> Option<ExitCode> {
    std::env::var_os(CHILD_ENV).map(|_| crate::cli::main())
}

/// How often a stopping child is sent SIGTERM again: a SIGTERM that lands while the child is
/// still installing its handler can be lost (seen once in 2,000 campaign runs), so one is not
/// enough.
pub const RESEND_TERM_EVERY: Duration = Duration::from_millis(200);

/// How long a child asked to stop (SIGTERM) may take to finish its step and exit; and, with
/// far more room than it needs, how long a SIGKILLed child may take to be reaped.
pub const STOP_DEADLINE: Duration = Duration::from_secs(60);

/// What [`Child::wait_within`] does while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Only wait: the child ends by itself (`--until-empty`) or was already SIGKILLed.
    Wait,
    /// Ask it to stop: SIGTERM now, and again every [`RESEND_TERM_EVERY`].
    Terminate,
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Exit status 0.
    Done,
    /// SIGKILL: in the lab only an armed crash point sends it.
    Crashed,
    /// Anything else: a bug or an operating error; its stderr says which.
    Failed(String),
}

pub struct Child {
    pub name: String,
    pub armed: Option<String>,
    process: std::process::Child,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr_path: std::path::PathBuf,
}

/// What to start.
pub struct Spec<'a> {
    pub name: String,
    pub args: Vec<String>,
    pub crash: Option<String>,
    /// A file fed to the child's stdin.
    pub stdin: Option<&'a Path>,
    /// Collect stdout lines (the client's replies).
    pub capture_stdout: bool,
}

pub fn spawn(logs_dir: &Path, spec: Spec<'_>) -> Result<Child> {
    let exe = std::env::current_exe().ctx("finding current_exe() to re-execute")?;
    let stderr_path = logs_dir.join(format!("{}.stderr", spec.name));
    let stderr = File::create(&stderr_path).ctx(format!("creating {}", stderr_path.display()))?;
    let mut command = Command::new(exe);
    command.args(&spec.args).env(CHILD_ENV, "1").stderr(stderr);
    match &spec.crash {
        Some(point) => command.env("OUTBOX_CRASH", point),
        None => command.env_remove("OUTBOX_CRASH"),
    };
    match spec.stdin {
        Some(path) => command.stdin(File::open(path).ctx(format!("opening {}", path.display()))?),
        None => command.stdin(Stdio::null()),
    };
    command.stdout(if spec.capture_stdout {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut process = command
        .spawn()
        .ctx(format!("starting child {}", spec.name))?;
    let stdout = process.stdout.take().map(|out| {
        std::thread::spawn(move || BufReader::new(out).lines().map_while(|l| l.ok()).collect())
    });
    Ok(Child {
        name: spec.name,
        armed: spec.crash,
        process,
        stdout,
        stderr_path,
    })
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Non-blocking: has it ended, and how?
    pub fn try_ended(&mut self) -> Result<Option<Ended>> {
        let status = self
            .process
            .try_wait()
            .ctx(format!("waiting for {}", self.name))?;
        Ok(status.map(|s| self.classify(s)))
    }

    pub fn wait_ended(&mut self) -> Result<Ended> {
        let status = self
            .process
            .wait()
            .ctx(format!("waiting for {}", self.name))?;
        Ok(self.classify(status))
    }

    /// Wait for it to end, at most `deadline`; with [`Stop::Terminate`], ask it to stop
    /// (SIGTERM) and ask again every [`RESEND_TERM_EVERY`]. Past the deadline it is killed
    /// (SIGKILL, which cannot be lost) and the wait is an error. Every harness wait on a
    /// child that should end goes through here, so none can hang on a lost signal.
    pub fn wait_within(&mut self, deadline: Duration, stop: Stop) -> Result<Ended> {
        let started = Instant::now();
        let mut last_term: Option<Instant> = None;
        loop {
            if let Some(ended) = self.try_ended()? {
                return Ok(ended);
            }
            if started.elapsed() > deadline {
                let _ = self.signal(libc::SIGKILL);
                let _ = self.wait_ended();
                return Err(Error::Input(format!(
                    "{} still running after {} ms: killed",
                    self.name,
                    deadline.as_millis()
                )));
            }
            let resend = last_term.is_none_or(|t| t.elapsed() >= RESEND_TERM_EVERY);
            if stop == Stop::Terminate && resend {
                // Ignore an error: the child may have ended since try_ended looked.
                let _ = self.terminate();
                last_term = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn classify(&self, status: std::process::ExitStatus) -> Ended {
        if status.success() || status.signal() == Some(libc::SIGTERM) {
            // SIGTERM before the child installed its handler ends it by the default action:
            // still the clean stop we asked for.
            Ended::Done
        } else if status.signal() == Some(libc::SIGKILL) {
            Ended::Crashed
        } else {
            let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
            Ended::Failed(format!(
                "{} ended with {status}: {}",
                self.name,
                stderr.trim()
            ))
        }
    }

    /// The stdout lines it printed (after it ended).
    pub fn stdout_lines(&mut self) -> Vec<String> {
        self.stdout
            .take()
            .map(|t| t.join().expect("stdout reader panicked"))
            .unwrap_or_default()
    }

    /// Ask it to stop (SIGTERM); it finishes its current step and exits 0.
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Send a signal to this child (by its pid, never by name).
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        // SAFETY: kill(2) on the pid of a child we spawned and have not yet reaped.
        let rc = unsafe { libc::kill(self.process.id() as libc::pid_t, signal) };
        if rc != 0 {
            return Err(Error::Io {
                context: format!("sending signal {signal} to {}", self.name),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

impl Drop for Child {
    /// A child must never outlive the harness that supervises it (an error path included).
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child running `script` under `sh`, wrapped like one `spawn` starts; returned once
    /// the script has ignored SIGTERM (`trap '' TERM`), so no test signal beats the trap.
    fn shell(name: &str, script: &str) -> Child {
        let ready = std::env::temp_dir().join(format!("outbox-lab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let script = format!("trap '' TERM; : > '{}'; {script}", ready.display());
        let process = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh starts");
        let started = Instant::now();
        while !ready.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "sh never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&ready);
        Child {
            name: "sh".into(),
            armed: None,
            process,
            stdout: None,
            stderr_path: std::path::PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn a_lost_sigterm_is_sent_again_until_the_child_stops() {
        // Ignores SIGTERM for 0.5 s (as a child does before its handler is in place), then
        // exits 0 on the next one: only a resent SIGTERM can stop it.
        let mut child = shell(
            "lost-term",
            "sleep 0.5; trap 'exit 0' TERM; while :; do sleep 0.02; done",
        );
        let started = Instant::now();
        let ended = child
            .wait_within(Duration::from_secs(20), Stop::Terminate)
            .expect("the resent SIGTERM stops it well before the deadline");
        assert_eq!(ended, Ended::Done);
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "the first SIGTERMs were ignored, so it cannot have stopped at once ({:?})",
            started.elapsed()
        );
    }

    #[test]
    fn a_child_that_never_stops_is_killed_at_the_deadline() {
        let mut child = shell("never-stops", "while :; do sleep 0.02; done");
        let err = child
            .wait_within(Duration::from_millis(600), Stop::Terminate)
            .expect_err("it ignores every SIGTERM");
        assert!(
            err.to_string().contains("still running after 600 ms"),
            "{err}"
        );
        assert!(
            child.try_ended().expect("reaped").is_some(),
            "the child is dead and reaped after the deadline"
        );
    }
}
