//! What a campaign run does to the pipeline: the crash kinds, one per run, chosen by seed.
//!
//! The list is open: a new way to fail (a power cut, say) is one more variant here and one
//! more arm in `run::inflict`. A seed always maps to the same kind, so a failing seed replays.

use std::fmt;

use crate::crashpoint::{Component, Point};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A process SIGKILLs itself at this crash point (`OUTBOX_CRASH`).
    Point(Point),
    /// The campaign SIGKILLs one of the running processes, from outside, at a random instant.
    OutsideKill,
    /// Every process dies at once, then each log's un-synced tail is damaged as a power cut
    /// could leave it (`lab::harness::power`).
    PowerCut,
}

/// Every kind, in the order seeds cycle through them: the outbox pipeline's crash points
/// (the naive service's are its own lesson: they lose events by design), then outside kills,
/// then power cuts.
pub fn all() -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Point::ALL
        .into_iter()
        .filter(|p| !matches!(p, Point::NaiveAfterCommit | Point::NaiveAfterPublish))
        .map(Kind::Point)
        .collect();
    kinds.push(Kind::OutsideKill);
    kinds.push(Kind::PowerCut);
    kinds
}

/// The kind seed `seed` runs.
pub fn for_seed(kinds: &[Kind], seed: u64) -> Kind {
    assert!(!kinds.is_empty(), "a campaign needs at least one kind");
    kinds[(seed % kinds.len() as u64) as usize]
}

impl Kind {
    /// Which process a self-inflicted crash arms.
    pub fn armed(self) -> Option<(Component, Point)> {
        match self {
            Kind::Point(point) => Some((point.component(), point)),
            Kind::OutsideKill | Kind::PowerCut => None,
        }
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Point(point) => write!(f, "{point}"),
            Kind::OutsideKill => f.write_str("SIGKILL from outside"),
            Kind::PowerCut => f.write_str("power cut"),
        }
    }
}
