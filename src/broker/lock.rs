//! File locks with a bounded wait: no stopped process can wedge the ones waiting behind it.
//!
//! Appends to a partition are serialised by an exclusive `flock` on its log. A blocking
//! `flock` waits for ever: a relay frozen while holding it (SIGSTOP, a debugger, a VM paused)
//! would stop every other relay at its first batch for that partition, and since the kernel
//! restarts a blocking `flock` after a signal handler runs, they would not even hear SIGTERM.
//! So waits here are *non-blocking attempts in a loop*:
//!
//! ```text
//!   try_lock ── got it ──▶ Locked (released on drop, or by the kernel if we die)
//!      │ busy
//!      ▼
//!   stop flag set? ──▶ Error::LockBusy (the caller stops)        checked every STEP_MS
//!   waited max_wait_ms? ──▶ Error::LockBusy { holder_pid, .. }   the caller moves on
//!   sleep STEP_MS, try again
//! ```
//!
//! What happens to the *holder* is a choice, made here and explained in the docs: it is left
//! alone. A paused writer cannot be safely pre-empted without fencing at the log (it may
//! resume and finish its `write()` over whatever a usurper appended), so its partition stays
//! unavailable while it is stopped, and everything else keeps flowing.

use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// How often a waiting process retries the lock and looks at its stop flag.
const STEP_MS: u64 = 2;
/// The longest any single wait may be asked to last: a bound, not a tuning knob.
pub const MAX_LOCK_WAIT_MS: u64 = 60_000;
/// What writers that were given no budget wait: long enough for any healthy append, short
/// enough that a wedged holder becomes an error a person can read.
pub const DEFAULT_LOCK_WAIT_MS: u64 = 10_000;

/// The process's stop flag (SIGTERM/SIGINT), once a command installed its handlers: every
/// [`LockWait::patient`] wait honours it, so a caller that was given no flag of its own (a
/// relay publishing its durable end, a tool recovering a tail) still stops within a step.
static PROCESS_STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Make `stop` the flag every patient lock wait in this process checks (first call wins).
pub fn set_process_stop(stop: &Arc<AtomicBool>) {
    let _ = PROCESS_STOP.set(Arc::clone(stop));
}

/// How long to wait for a lock, and the flag that ends the wait early (SIGTERM).
#[derive(Debug, Clone, Copy)]
pub struct LockWait<'a> {
    pub max_wait_ms: u64,
    pub stop: Option<&'a AtomicBool>,
}

impl LockWait<'_> {
    /// [`DEFAULT_LOCK_WAIT_MS`], ended early by the process's stop flag if one is set
    /// ([`set_process_stop`]).
    pub fn patient() -> LockWait<'static> {
        LockWait {
            max_wait_ms: DEFAULT_LOCK_WAIT_MS,
            stop: PROCESS_STOP.get().map(|flag| &**flag),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// An exclusive `flock`, released on drop (also on an early `?` return; and by the kernel if
/// the process dies, which is what makes a SIGKILLed writer harmless).
pub(crate) struct Locked<'a> {
    file: &'a File,
}

impl<'a> Locked<'a> {
    /// Take the exclusive lock, waiting at most `wait.max_wait_ms` and never past a stop.
    /// A lock still busy then is `Error::LockBusy`, naming the holder's pid when the kernel
    /// says (`/proc/locks`).
    pub(crate) fn exclusive_within(
        file: &'a File,
        path: &Path,
        wait: &LockWait<'_>,
    ) -> Result<Locked<'a>> {
        assert!(
            wait.max_wait_ms <= MAX_LOCK_WAIT_MS,
            "lock wait {} ms over the {MAX_LOCK_WAIT_MS} ms limit",
            wait.max_wait_ms
        );
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Locked { file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(e).ctx(format!("locking {}", path.display()));
                }
            }
            let waited_ms = started.elapsed().as_millis() as u64;
            if wait.stopped() || waited_ms >= wait.max_wait_ms {
                return Err(Error::LockBusy {
                    file: path.to_path_buf(),
                    holder_pid: holder_pid(file),
                    waited_ms,
                    stopped: wait.stopped(),
                });
            }
            std::thread::sleep(Duration::from_millis(STEP_MS));
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock error leaves nothing to undo.
        let _ = self.file.unlock();
    }
}

/// Who holds a `flock` on `file`, from `/proc/locks` (`FLOCK ADVISORY WRITE <pid>
/// <major>:<minor>:<inode> …`). `None` when it cannot tell (not Linux, or the lock was just
/// released): the report then says "an unknown process", never a guess.
pub fn holder_pid(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    // glibc's gnu_dev_major / gnu_dev_minor.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1:" "FLOCK" "ADVISORY" "WRITE" pid dev:ino start end
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str()))
            .then(|| fields.get(4)?.parse().ok())
            .flatten()
    })
}
