//! The inbox's dedupe window, and the guard that survives it.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example inbox_retention [DIR]
//! ```
//!
//! (DIR defaults to a fresh directory under the system temp dir; it is left behind so you can
//! poke at it: `outbox-lab verify --dir DIR/guard-off`.)
//!
//! What you will see, in three acts, with time travel instead of sleeping (the consumer and
//! the sweep run on a clock shifted by hours):
//!
//! 1. Seq guard off. Three orders are placed, relayed and applied. A zombie relay re-appends
//!    order 1's record an hour later: the consumer SKIPS it (its event id is in the inbox).
//!    25 hours later the sweep (retention 24h) empties the inbox; the zombie re-appends the
//!    record once more and the consumer APPLIES IT AGAIN: the customer's points are inflated,
//!    the consumer flags the event "too old to dedupe by inbox", and `verify` says FAILED.
//! 2. Seq guard on, same story: the very late duplicate is DROPPED, because order 1's last
//!    applied seq (1) is kept per order, in the same transaction as the effect. Verdict OK.
//! 3. A consumer asked to keep its inbox 1h while promising to tolerate 12h of downtime
//!    refuses to start, and says why.

use std::path::PathBuf;

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("outbox-lab-inbox-retention-{}", std::process::id()))
        });
    println!("data directories under {}", root.display());
    let mut stdout = std::io::stdout();
    if let Err(e) = outbox_lab::lab::inbox_demo::run(&root, &mut stdout) {
        eprintln!("inbox_retention: error: {e}");
        std::process::exit(2);
    }
}
