//! Who may hold a connection. Connections are counted per uid and in all; a share is
//! reserved for root, because the PAM module inside sshd, sudo and login runs as root:
//! however many uids an attacker controls, they cannot take the slots logins need.
//! Each admitted connection holds a [`Slot`]; dropping it gives the slot back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The connection limits (the README's "Connection limits" gives the reasoning behind
/// the numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections in all.
    pub total: usize,
    /// Of `total`, the slots only root may use.
    pub root_reserved: usize,
    /// Connections of one non-root uid.
    pub per_uid: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        total: 512,
        root_reserved: 128,
        per_uid: 8,
    };

    /// File descriptors toopherd keeps for itself beyond its connections (database,
    /// log, listener, runtime, HTTPS to the Toopher API).
    pub const FD_RESERVE: u64 = 64;

    /// The default limits, shrunk to fit `nofile` descriptors (RLIMIT_NOFILE): an
    /// `accept` that fails for want of descriptors would turn root away like anyone.
    pub fn fitting(nofile: u64) -> Limits {
        let d = Limits::DEFAULT;
        let room = usize::try_from(nofile.saturating_sub(Limits::FD_RESERVE)).unwrap_or(usize::MAX);
        if room >= d.total {
            return d;
        }
        let total = room.max(4);
        Limits {
            total,
            root_reserved: (total / 4).max(2),
            per_uid: d.per_uid.min(total / 4).max(1),
        }
    }

    /// The slots every non-root uid shares.
    fn non_root_total(&self) -> usize {
        self.total.saturating_sub(self.root_reserved)
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The uid holds its `per_uid` connections.
    PerUid,
    /// Non-root uids hold every slot not reserved for root.
    NonRootShare,
    /// Every slot is taken.
    Total,
}

impl Refusal {
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::PerUid => "this uid is at its connection limit",
            Refusal::NonRootShare => "the connections open to non-root users are all taken",
            Refusal::Total => "toopherd is at its connection limit",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    non_root: usize,
    per_uid: HashMap<u32, usize>,
}

#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
}

/// An admitted connection's place; given back on drop (also when its task panics).
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    uid: u32,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn try_admit(self: &Arc<Self>, uid: u32) -> Result<Slot, Refusal> {
        // Counts are only changed under the lock and never left half-updated, so a
        // poisoned lock still holds consistent counts.
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.limits.total {
            return Err(Refusal::Total);
        }
        if uid != 0 {
            if c.per_uid.get(&uid).copied().unwrap_or(0) >= self.limits.per_uid {
                return Err(Refusal::PerUid);
            }
            if c.non_root >= self.limits.non_root_total() {
                return Err(Refusal::NonRootShare);
            }
            c.non_root += 1;
            *c.per_uid.entry(uid).or_insert(0) += 1;
        }
        c.total += 1;
        Ok(Slot {
            admission: Arc::clone(self),
            uid,
        })
    }

    /// Connections held now, in all and by `uid`.
    #[cfg(test)]
    fn held(&self, uid: u32) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (c.total, c.per_uid.get(&uid).copied().unwrap_or(0))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if self.uid != 0 {
            c.non_root = c.non_root.saturating_sub(1);
            if let Some(n) = c.per_uid.get_mut(&self.uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_uid.remove(&self.uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        total: 10,
        root_reserved: 4,
        per_uid: 3,
    };

    #[test]
    fn one_uid_gets_its_share_and_no_more() {
        let a = Admission::new(SMALL);
        let held: Vec<_> = (0..3).map(|_| a.try_admit(1000).unwrap()).collect();
        assert_eq!(a.try_admit(1000).unwrap_err(), Refusal::PerUid);
        // Others are not affected.
        let other = a.try_admit(1001).unwrap();
        drop(held);
        assert_eq!(a.held(1000), (1, 0));
        assert!(a.try_admit(1000).is_ok());
        drop(other);
    }

    #[test]
    fn many_uids_cannot_take_roots_share() {
        let a = Admission::new(SMALL);
        let mut held = Vec::new();
        for uid in 1000..1100 {
            if let Ok(s) = a.try_admit(uid) {
                held.push(s);
            }
        }
        assert_eq!(
            held.len(),
            6,
            "only total - root_reserved go to non-root uids"
        );
        assert_eq!(a.try_admit(2000).unwrap_err(), Refusal::NonRootShare);
        let root: Vec<_> = (0..4).map(|_| a.try_admit(0).unwrap()).collect();
        assert_eq!(a.try_admit(0).unwrap_err(), Refusal::Total);
        drop(root);
        assert!(a.try_admit(0).is_ok());
    }

    #[test]
    fn root_may_use_every_slot() {
        let a = Admission::new(SMALL);
        let root: Vec<_> = (0..10).map(|_| a.try_admit(0).unwrap()).collect();
        assert_eq!(a.try_admit(1000).unwrap_err(), Refusal::Total);
        drop(root);
        assert_eq!(a.held(0), (0, 0));
    }

    #[test]
    fn limits_fit_the_descriptors() {
        assert_eq!(Limits::fitting(1024), Limits::DEFAULT);
        let l = Limits::fitting(256);
        assert_eq!(l.total, 192);
        assert!(l.root_reserved >= 2 && l.per_uid >= 1 && l.per_uid <= 8);
        let tiny = Limits::fitting(10);
        assert!(tiny.total >= 4 && tiny.root_reserved < tiny.total);
    }
}
