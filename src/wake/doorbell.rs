//! The doorbell on Linux: an inotify descriptor watching one directory, ringing when one named
//! file in it is written (or created, or renamed into place).
//!
//! ```text
//!   inotify fd (non-blocking) ── watch DIR: IN_MODIFY | IN_CREATE | IN_MOVED_TO
//!        │  events: [wd mask cookie len name…][…]…   (names of files in DIR)
//!        ▼
//!   drain(): read ≤ MAX_DRAIN_READS × BUF_BYTES, rung = any event for our file name
//!   wait():  poll(fd, ≤ STOP_SLICE_MS) until rung, the deadline, or stop
//! ```
//!
//! A directory watch, not a file watch: SQLite deletes `orders.db-wal` when the last
//! connection closes and creates it again later; a watch on the file itself would die with it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{BUF_BYTES, MAX_DRAIN_READS, STOP_SLICE_MS};
use crate::error::{Error, Result};

/// The fixed part of `struct inotify_event` (wd, mask, cookie, len), before the name.
const EVENT_HEADER_BYTES: usize = 16;

pub struct Doorbell {
    fd: OwnedFd,
    /// The file we ring for, as inotify reports it (a name inside the watched directory).
    file_name: Vec<u8>,
    what: String,
    buf: Vec<u8>,
}

impl Doorbell {
    pub fn open(dir: &Path, file_name: &str) -> Result<Doorbell> {
        let what = dir.join(file_name).display().to_string();
        // SAFETY: inotify_init1 takes flags only; a non-negative return is a new descriptor
        // we own from here on (OwnedFd closes it).
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(os_error(format!(
                "creating an inotify doorbell for {what} (too many? see /proc/sys/fs/inotify/max_user_instances)"
            )));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else holds.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let c_dir = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| Error::Input(format!("{} contains a NUL byte", dir.display())))?;
        let mask = libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO;
        // SAFETY: fd is ours and open; c_dir is a valid NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_dir.as_ptr(), mask) };
        if wd < 0 {
            return Err(os_error(format!("watching {} for {what}", dir.display())));
        }
        Ok(Doorbell {
            fd,
            file_name: file_name.as_bytes().to_vec(),
            what,
            buf: vec![0; BUF_BYTES],
        })
    }

    /// Read what the kernel has queued (without blocking); true if any of it was our file.
    pub fn drain(&mut self) -> Result<bool> {
        let mut rung = false;
        for _ in 0..MAX_DRAIN_READS {
            // SAFETY: buf is a live, writable allocation of buf.len() bytes.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return match e.kind() {
                    std::io::ErrorKind::WouldBlock => Ok(rung),
                    std::io::ErrorKind::Interrupted => continue,
                    _ => Err(io(format!("reading the doorbell for {}", self.what), e)),
                };
            }
            rung |= rings_for(&self.buf[..n as usize], &self.file_name);
        }
        Ok(true) // still more queued after MAX_DRAIN_READS: plenty happened, call it a ring
    }

    /// Wait until our file is written, `max_wait_ms` pass, or `stop` is set. True if rung.
    pub fn wait(&mut self, stop: &AtomicBool, max_wait_ms: u64) -> Result<bool> {
        let deadline = Instant::now() + Duration::from_millis(max_wait_ms);
        while !stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let slice_ms = (left.as_millis() as u64).clamp(1, STOP_SLICE_MS);
            if self.readable_within(slice_ms)? && self.drain()? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn readable_within(&self, timeout_ms: u64) -> Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, nfds = 1.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms as libc::c_int) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false); // a signal (SIGTERM?): let the caller look at its stop flag
            }
            return Err(io(format!("waiting on the doorbell for {}", self.what), e));
        }
        Ok(n > 0)
    }
}

/// Does this buffer of inotify events mention `file_name` (or overflow, which may have)?
fn rings_for(mut events: &[u8], file_name: &[u8]) -> bool {
    let mut rung = false;
    while events.len() >= EVENT_HEADER_BYTES {
        let field = |at: usize| u32::from_ne_bytes(events[at..at + 4].try_into().expect("4 bytes"));
        let mask = field(4);
        let name_bytes = field(12) as usize;
        let end = EVENT_HEADER_BYTES + name_bytes;
        assert!(
            end <= events.len(),
            "inotify event runs past the bytes read"
        );
        // The name is NUL-padded to an alignment boundary.
        let name = &events[EVENT_HEADER_BYTES..end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        rung |= name == file_name || mask & libc::IN_Q_OVERFLOW != 0;
        events = &events[end..];
    }
    rung
}

fn os_error(context: String) -> Error {
    io(context, std::io::Error::last_os_error())
}

fn io(context: String, source: std::io::Error) -> Error {
    Error::Io { context, source }
}
