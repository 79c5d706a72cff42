//! The grace book: when each user last passed a second factor, and from where.
//!
//! A grant is keyed by (user, place), so it never crosses users and never crosses places.
//! The place is the login's `rhost` when that is an IP address (sshd), or, for logins
//! without an rhost (sudo, su, a console), the kernel audit session of the process that
//! runs the PAM stack: the kernel sets it once at login (pam_loginuid) and no process can
//! change it afterwards. An SSH login carries its grant into its own session through the
//! module's session hook: at authentication sshd has no audit session yet, so the grant
//! comes with a one-time bind token that the session hook, running after pam_loginuid,
//! hands back from inside the new session ([`GraceBook::bind`]).
//!
//! The book lives in toopherd's memory only. It is bounded ([`CAPACITY`] grants,
//! [`TOKEN_CAPACITY`] tokens), forgets grants older than the longest configured grace
//! period, and forgets everything when toopherd restarts: after a restart every login asks
//! for a second factor again (fail closed, and no grant survives in a file).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Most grants remembered at once; beyond it the oldest is forgotten (which only costs
/// someone a second factor).
pub const CAPACITY: usize = 10_000;
/// Most unredeemed bind tokens at once.
pub const TOKEN_CAPACITY: usize = 1_000;
/// How long a bind token waits for the session hook: the rest of the PAM transaction
/// (account and session stacks), bounded by sshd's LoginGraceTime (120 s by default).
pub const TOKEN_TTL: u64 = 300;

/// Where a login comes from, for the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    Rhost(IpAddr),
    /// A kernel audit session id (`/proc/PID/sessionid`), never the unset value.
    Session(u32),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Rhost(ip) => write!(f, "rhost {ip}"),
            Place::Session(id) => write!(f, "audit session {id}"),
        }
    }
}

/// The grace place of a login: its rhost when that is an IP address; without an rhost,
/// the audit session of the PAM process (known only for root peers, and only when the
/// peer really runs as the user). A login from a host name has none: a name is not a
/// place anyone can vouch for, and the session of a remote login's PAM process (sshd's)
/// is not the person's. Nor has a login from a loopback address (127.0.0.0/8, ::1, and
/// their IPv4-mapped forms): rhost is the last hop, and a loopback hop is every local
/// user's (`ssh localhost`, a jump host's forward, a local proxy), not one person's place.
pub fn place_of(rhost: Option<&str>, session: Option<u32>) -> Option<Place> {
    match rhost {
        Some(r) if !r.is_empty() => super::network::rhost_address(Some(r))
            .filter(|ip| !ip.is_loopback())
            .map(Place::Rhost),
        _ => session.map(Place::Session),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// Unknown, already used, expired, or issued for another user.
    InvalidToken,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the grant token is unknown, used, expired or for another user")
    }
}

struct Token {
    user: String,
    /// When the second factor was passed: binding never makes a grant younger.
    granted_at: u64,
    issued_at: u64,
}

/// A user's clear count as a login saw it at `Begin` ([`GraceBook::generation`]): a grant
/// is recorded only if no clear came in between, so a login that began before `disable`,
/// `reset` or `enroll --force` and passed after it leaves no grace behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

#[derive(Default)]
pub struct GraceBook {
    grants: HashMap<(String, Place), u64>,
    /// By the SHA-256 of the token, so the table holds nothing that could be handed back.
    tokens: HashMap<[u8; 32], Token>,
    /// The generation of each user cleared since [`GraceBook::floor`] was last raised:
    /// values of one counter that only grows ([`GraceBook::clears`]).
    generations: HashMap<String, u64>,
    /// Every clear so far.
    clears: u64,
    /// The generation of a user not in `generations`. Raised to `clears` whenever the
    /// table is emptied to stay bounded: every generation seen before then differs, so a
    /// login in flight at that moment records no grant (it costs a second factor, never
    /// lets one be skipped).
    floor: u64,
}

impl GraceBook {
    pub fn new() -> GraceBook {
        GraceBook::default()
    }

    pub fn len(&self) -> usize {
        self.grants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Remembers that `user` passed a second factor at `at` from `place`. `keep` is the
    /// longest grace period of any service (older grants are worthless).
    pub fn record(&mut self, user: &str, place: Place, at: u64, keep: u64) {
        let key = (user.to_owned(), place);
        if !self.grants.contains_key(&key) && self.grants.len() >= CAPACITY {
            self.grants.retain(|_, t| at.saturating_sub(*t) <= keep);
            if self.grants.len() >= CAPACITY
                && let Some(oldest) = self
                    .grants
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
            {
                self.grants.remove(&oldest);
            }
        }
        let t = self.grants.entry(key).or_insert(at);
        *t = (*t).max(at);
    }

    /// When `user` last passed a second factor from `place`, if within `keep` seconds.
    pub fn last(&mut self, user: &str, place: Place, now: u64, keep: u64) -> Option<u64> {
        let key = (user.to_owned(), place);
        let at = *self.grants.get(&key)?;
        if now.saturating_sub(at) > keep {
            self.grants.remove(&key);
            return None;
        }
        Some(at)
    }

    /// Forgets every grant and token of `user` (disable, reset, remove, `grace clear`)
    /// and moves the user to a new generation. Returns how many grants there were.
    pub fn clear_user(&mut self, user: &str) -> usize {
        let before = self.grants.len();
        self.grants.retain(|(u, _), _| u != user);
        self.tokens.retain(|_, t| t.user != user);
        self.clears += 1;
        if self.generations.len() >= CAPACITY && !self.generations.contains_key(user) {
            self.generations.clear();
            self.floor = self.clears;
        }
        self.generations.insert(user.to_owned(), self.clears);
        before - self.grants.len()
    }

    /// `user`'s generation now: remembered by a login at `Begin`, checked when it passes.
    pub fn generation(&self, user: &str) -> Generation {
        Generation(self.generations.get(user).copied().unwrap_or(self.floor))
    }

    /// [`GraceBook::record`], only when `user` is still in generation `seen` (no clear
    /// since the login began). Whether it was recorded.
    pub fn record_in(
        &mut self,
        user: &str,
        seen: Generation,
        place: Place,
        at: u64,
        keep: u64,
    ) -> bool {
        if self.generation(user) != seen {
            return false;
        }
        self.record(user, place, at, keep);
        true
    }

    /// A one-time token that lets the session hook of this login bind its grant (made at
    /// `granted_at`) to the audit session it runs in. Random, 256 bits, hex. `None` when
    /// the user was cleared since the login began (generation `seen`).
    pub fn issue_token(
        &mut self,
        user: &str,
        seen: Generation,
        granted_at: u64,
        now: u64,
    ) -> Result<Option<Zeroizing<String>>, getrandom::Error> {
        if self.generation(user) != seen {
            return Ok(None);
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        getrandom::fill(raw.as_mut())?;
        let token = Zeroizing::new(hex(raw.as_ref()));
        self.tokens
            .retain(|_, t| now.saturating_sub(t.issued_at) <= TOKEN_TTL);
        if self.tokens.len() >= TOKEN_CAPACITY
            && let Some(oldest) = self
                .tokens
                .iter()
                .min_by_key(|(_, t)| t.issued_at)
                .map(|(k, _)| *k)
        {
            self.tokens.remove(&oldest);
        }
        self.tokens.insert(
            digest(&token),
            Token {
                user: user.to_owned(),
                granted_at,
                issued_at: now,
            },
        );
        Ok(Some(token))
    }

    /// Redeems a token from the session hook: the grant of its login now also counts in
    /// audit session `session`. Single use; the token must belong to `user`.
    pub fn bind(
        &mut self,
        token: &str,
        user: &str,
        session: u32,
        now: u64,
        keep: u64,
    ) -> Result<Place, BindError> {
        let entry = self
            .tokens
            .remove(&digest(token))
            .ok_or(BindError::InvalidToken)?;
        let fresh = now.saturating_sub(entry.issued_at) <= TOKEN_TTL;
        if !fresh || !bool::from(entry.user.as_bytes().ct_eq(user.as_bytes())) {
            return Err(BindError::InvalidToken);
        }
        let place = Place::Session(session);
        self.record(user, place, entry.granted_at, keep);
        Ok(place)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rhost(s: &str) -> Place {
        Place::Rhost(s.parse().unwrap())
    }

    #[test]
    fn places() {
        assert_eq!(place_of(Some("10.1.2.3"), Some(7)), Some(rhost("10.1.2.3")));
        assert_eq!(
            place_of(Some("::ffff:10.1.2.3"), None),
            Some(rhost("10.1.2.3"))
        );
        // A host name is no place, and sshd's own session does not stand in for it.
        assert_eq!(place_of(Some("office.example.com"), Some(7)), None);
        assert_eq!(place_of(None, Some(7)), Some(Place::Session(7)));
        assert_eq!(place_of(Some(""), Some(7)), Some(Place::Session(7)));
        assert_eq!(place_of(None, None), None);
        // Loopback is every local user's last hop, never a place; nor is sshd's session
        // a stand-in for it.
        for lo in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(place_of(Some(lo), Some(7)), None, "{lo}");
        }
    }

    #[test]
    fn grants_are_per_user_and_place_and_expire() {
        let mut b = GraceBook::new();
        b.record("alice", rhost("10.0.0.1"), 1000, 300);
        assert_eq!(b.last("alice", rhost("10.0.0.1"), 1100, 300), Some(1000));
        assert_eq!(b.last("alice", rhost("10.0.0.2"), 1100, 300), None);
        assert_eq!(b.last("bob", rhost("10.0.0.1"), 1100, 300), None);
        assert_eq!(b.last("alice", Place::Session(1), 1100, 300), None);
        // A newer grant moves the time forward, an older one never back.
        b.record("alice", rhost("10.0.0.1"), 1200, 300);
        b.record("alice", rhost("10.0.0.1"), 900, 300);
        assert_eq!(b.last("alice", rhost("10.0.0.1"), 1300, 300), Some(1200));
        assert_eq!(b.last("alice", rhost("10.0.0.1"), 1501, 300), None);
        assert!(b.is_empty(), "an expired grant is forgotten when found");
    }

    #[test]
    fn clearing_a_user_forgets_grants_and_tokens() {
        let mut b = GraceBook::new();
        b.record("alice", rhost("10.0.0.1"), 1000, 300);
        b.record("alice", Place::Session(3), 1000, 300);
        b.record("bob", rhost("10.0.0.1"), 1000, 300);
        let token = b
            .issue_token("alice", b.generation("alice"), 1000, 1000)
            .unwrap()
            .unwrap();
        assert_eq!(b.clear_user("alice"), 2);
        assert_eq!(b.last("alice", Place::Session(3), 1001, 300), None);
        assert_eq!(b.last("bob", rhost("10.0.0.1"), 1001, 300), Some(1000));
        assert_eq!(
            b.bind(&token, "alice", 9, 1001, 300),
            Err(BindError::InvalidToken)
        );
    }

    #[test]
    fn the_book_is_bounded() {
        let mut b = GraceBook::new();
        for i in 0..CAPACITY as u64 {
            b.record(&format!("u{i}"), Place::Session(1), 10_000 + i, 300_000);
        }
        assert_eq!(b.len(), CAPACITY);
        b.record("newest", Place::Session(1), 20_000, 300_000);
        assert_eq!(b.len(), CAPACITY);
        assert_eq!(
            b.last("u0", Place::Session(1), 20_000, 300_000),
            None,
            "the oldest went"
        );
        assert!(
            b.last("newest", Place::Session(1), 20_000, 300_000)
                .is_some()
        );
        // Expired grants go before any live one.
        let mut b = GraceBook::new();
        for i in 0..CAPACITY as u64 {
            b.record(&format!("u{i}"), Place::Session(1), i, 300);
        }
        b.record("late", Place::Session(1), CAPACITY as u64 + 100, 300);
        assert!(b.len() < CAPACITY);
    }

    #[test]
    fn tokens_bind_once_for_their_user_in_time() {
        let mut b = GraceBook::new();
        let t = b
            .issue_token("alice", b.generation("alice"), 1000, 1005)
            .unwrap()
            .unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(
            b.bind(&t, "bob", 42, 1010, 300),
            Err(BindError::InvalidToken)
        );
        // A wrong user spends the token: no second guess at its owner.
        assert_eq!(
            b.bind(&t, "alice", 42, 1010, 300),
            Err(BindError::InvalidToken)
        );

        let t = b
            .issue_token("alice", b.generation("alice"), 1000, 1005)
            .unwrap()
            .unwrap();
        assert_eq!(b.bind(&t, "alice", 42, 1010, 300), Ok(Place::Session(42)));
        assert_eq!(
            b.bind(&t, "alice", 43, 1011, 300),
            Err(BindError::InvalidToken)
        );
        // The session's grant dates from the second factor, not from the binding.
        assert_eq!(b.last("alice", Place::Session(42), 1010, 300), Some(1000));
        assert_eq!(b.last("alice", Place::Session(42), 1301, 300), None);

        let t = b
            .issue_token("alice", b.generation("alice"), 1000, 1005)
            .unwrap()
            .unwrap();
        assert_eq!(
            b.bind(&t, "alice", 42, 1005 + TOKEN_TTL + 1, 300),
            Err(BindError::InvalidToken)
        );
        assert_eq!(
            b.bind("00", "alice", 42, 1006, 300),
            Err(BindError::InvalidToken)
        );
    }

    #[test]
    fn tokens_are_bounded() {
        let mut b = GraceBook::new();
        let first = b
            .issue_token("alice", b.generation("alice"), 1, 1)
            .unwrap()
            .unwrap();
        for _ in 0..TOKEN_CAPACITY {
            b.issue_token("alice", b.generation("alice"), 1, 2).unwrap();
        }
        assert!(b.tokens.len() <= TOKEN_CAPACITY);
        assert_eq!(
            b.bind(&first, "alice", 1, 3, 300),
            Err(BindError::InvalidToken)
        );
    }

    #[test]
    fn a_grant_after_a_clear_is_not_recorded() {
        let mut b = GraceBook::new();
        // alice's login begins, then an administrator clears her (enroll --force, ...).
        let seen = b.generation("alice");
        let bob_seen = b.generation("bob");
        b.clear_user("alice");
        assert!(!b.record_in("alice", seen, rhost("10.0.0.1"), 1000, 300));
        assert_eq!(b.last("alice", rhost("10.0.0.1"), 1001, 300), None);
        assert_eq!(b.issue_token("alice", seen, 1000, 1000).unwrap(), None);
        // Another user's login is not touched; a login begun after the clear records.
        assert!(b.record_in("bob", bob_seen, rhost("10.0.0.1"), 1000, 300));
        let now_seen = b.generation("alice");
        assert!(b.record_in("alice", now_seen, rhost("10.0.0.1"), 1000, 300));
        assert!(
            b.issue_token("alice", now_seen, 1000, 1000)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn generations_stay_bounded_and_never_repeat() {
        let mut b = GraceBook::new();
        let seen = b.generation("alice");
        b.clear_user("alice");
        for i in 0..CAPACITY {
            b.clear_user(&format!("u{i}"));
        }
        assert!(b.generations.len() <= CAPACITY);
        // alice's entry may be gone, but her generation is not the one her login saw.
        assert_ne!(b.generation("alice"), seen);
        assert!(!b.record_in("alice", seen, Place::Session(1), 1, 300));
    }
}
