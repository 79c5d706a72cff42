use super::*;
use crate::totp::{code_at_step, step_of};

pub(super) const LIMITS: Limits = Limits {
    max_failures: 5,
    window: 300,
};
pub(super) const T0: u64 = 1_700_000_000;

fn temp_db(name: &str) -> (std::path::PathBuf, Store) {
    let dir = std::env::temp_dir().join(format!("toopherd-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.sqlite3");
    let store = Store::open(&path).unwrap();
    (dir, store)
}

/// An active enrolment made at T0; returns the secret and the recovery codes.
pub(super) fn active(
    store: &mut Store,
    user: &str,
) -> (Zeroizing<Vec<u8>>, Vec<Zeroizing<String>>) {
    let e = store.enroll(user, 600, T0, false).unwrap();
    let code = code_at_step(&e.secret, step_of(T0)).unwrap();
    assert_eq!(
        store.activate(user, &code, T0, LIMITS).unwrap(),
        Verdict::Accepted(Method::Otp)
    );
    (e.secret, e.recovery_codes)
}

/// A code that `secret` does not accept at `at`, at its step nor the one before or after.
/// A fixed code such as "000000" is the right one for a random secret once in about a
/// million steps: a test that takes it for wrong then fails now and then.
pub(super) fn wrong_code(secret: &[u8], at: u64) -> String {
    (0u32..)
        .map(|n| format!("{n:06}"))
        .find(|code| crate::totp::matching_steps(secret, code, at).is_empty())
        .unwrap()
}

#[test]
fn database_is_created_0600_and_refused_when_loosened() {
    let (dir, store) = temp_db("perm");
    drop(store);
    let path = dir.join("db.sqlite3");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::InsecurePermissions { mode: 0o644, .. })
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn activation_uses_up_its_code_and_later_steps_work_once() {
    let (dir, mut store) = temp_db("replay");
    let (secret, _) = active(&mut store, "alice");
    assert_eq!(
        store.login_state("alice", T0, LIMITS).unwrap(),
        LoginState::Active
    );
    // The activation code itself is spent.
    let same = code_at_step(&secret, step_of(T0)).unwrap();
    assert_eq!(
        store.verify("alice", &same, T0 + 1, LIMITS).unwrap(),
        Some(Verdict::Rejected(Rejection::Replayed))
    );
    let next = code_at_step(&secret, step_of(T0) + 1).unwrap();
    assert_eq!(
        store.verify("alice", &next, T0 + 31, LIMITS).unwrap(),
        Some(Verdict::Accepted(Method::Otp))
    );
    assert_eq!(
        store.verify("alice", &next, T0 + 32, LIMITS).unwrap(),
        Some(Verdict::Rejected(Rejection::Replayed))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rate_limit_refuses_even_a_right_code_until_the_window_passes() {
    let (dir, mut store) = temp_db("rate");
    let (secret, _) = active(&mut store, "bob");
    for i in 0..5 {
        let at = T0 + 40 + i;
        assert_eq!(
            store
                .verify("bob", &wrong_code(&secret, at), at, LIMITS)
                .unwrap(),
            Some(Verdict::Rejected(Rejection::Wrong)),
        );
    }
    let now = T0 + 60;
    let good = code_at_step(&secret, step_of(now)).unwrap();
    assert_eq!(
        store.verify("bob", &good, now, LIMITS).unwrap(),
        Some(Verdict::RateLimited {
            until: T0 + 40 + 300
        })
    );
    assert_eq!(
        store.login_state("bob", now, LIMITS).unwrap(),
        LoginState::RateLimited { until: T0 + 340 }
    );
    // Once the oldest failure ages out, attempts are taken again.
    let later = T0 + 341;
    let good = code_at_step(&secret, step_of(later)).unwrap();
    assert_eq!(
        store.verify("bob", &good, later, LIMITS).unwrap(),
        Some(Verdict::Accepted(Method::Otp))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn recovery_codes_work_once_in_any_case() {
    let (dir, mut store) = temp_db("recovery");
    let (_, codes) = active(&mut store, "carol");
    let code = codes[3].to_uppercase();
    assert_eq!(
        store.verify("carol", &code, T0 + 5, LIMITS).unwrap(),
        Some(Verdict::Accepted(Method::RecoveryCode))
    );
    assert_eq!(
        store.verify("carol", &codes[3], T0 + 6, LIMITS).unwrap(),
        Some(Verdict::Rejected(Rejection::RecoveryCodeUsed))
    );
    let st = store.status("carol", "local", T0 + 7, LIMITS).unwrap();
    assert_eq!(st.recovery_codes_left, 9);
    // Stored hashed: the plaintext is nowhere in the database.
    let raw = std::fs::read(dir.join("db.sqlite3")).unwrap();
    let wal = std::fs::read(dir.join("db.sqlite3-wal")).unwrap_or_default();
    let plain = recovery::normalize(&codes[5]).unwrap();
    for bytes in [raw, wal] {
        assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_bytes()));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pending_enrolment_expires_and_does_not_count_as_enrolled() {
    let (dir, mut store) = temp_db("pending");
    let e = store.enroll("dave", 600, T0, false).unwrap();
    assert_eq!(
        store.login_state("dave", T0, LIMITS).unwrap(),
        LoginState::NotEnrolled
    );
    let late = T0 + 601;
    let code = code_at_step(&e.secret, step_of(late)).unwrap();
    assert!(matches!(
        store.activate("dave", &code, late, LIMITS),
        Err(StoreError::EnrollmentExpired)
    ));
    assert_eq!(store.expire_pending(late).unwrap(), 1);
    assert!(matches!(
        store.activate("dave", &code, late, LIMITS),
        Err(StoreError::NoPendingEnrollment)
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn active_enrolment_is_replaced_only_when_forced() {
    let (dir, mut store) = temp_db("force");
    active(&mut store, "erin");
    assert!(matches!(
        store.enroll("erin", 600, T0 + 1, false),
        Err(StoreError::AlreadyActive)
    ));
    assert!(store.enroll("erin", 600, T0 + 1, true).is_ok());
    assert!(store.remove("erin").unwrap());
    assert!(!store.remove("erin").unwrap());
    let _ = std::fs::remove_dir_all(dir);
}

/// An active account "sam" with the secret of `totp::SHARED_CODE_SECRET` whose last
/// accepted step is `last`.
fn sam_at(name: &str, last: u64) -> (std::path::PathBuf, Store) {
    let (dir, mut store) = temp_db(name);
    active(&mut store, "sam");
    store
        .conn
        .execute(
            "UPDATE accounts SET secret = ?2, last_step = ?3 WHERE user = ?1",
            params!["sam", &crate::totp::SHARED_CODE_SECRET[..], to_i64(last)],
        )
        .unwrap();
    (dir, store)
}

#[test]
fn a_code_accepted_once_is_refused_in_the_next_step_that_has_it_too() {
    use crate::totp::{NEIGHBOURS_SHARE, STEP_SECS};
    // 681852 accepted at step 57840093; 57840094's code is 681852 too.
    let (dir, mut store) = sam_at("shared-next", NEIGHBOURS_SHARE);
    let at = (NEIGHBOURS_SHARE + 1) * STEP_SECS;
    assert_eq!(
        store.verify("sam", "681852", at, LIMITS).unwrap(),
        Some(Verdict::Rejected(Rejection::Replayed))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_code_the_previous_and_next_step_share_is_accepted_once_after_the_current_one() {
    use crate::totp::{PREVIOUS_AND_NEXT_SHARE, STEP_SECS};
    // 239676 accepted at step 58401911; 58401910 and 58401912 both have 703651, which
    // was never accepted: it is new in 58401912.
    let current = PREVIOUS_AND_NEXT_SHARE + 1;
    let (dir, mut store) = sam_at("shared-around", current);
    let at = current * STEP_SECS;
    assert_eq!(
        store.verify("sam", "703651", at, LIMITS).unwrap(),
        Some(Verdict::Accepted(Method::Otp))
    );
    assert_eq!(
        store.verify("sam", "703651", at + 1, LIMITS).unwrap(),
        Some(Verdict::Rejected(Rejection::Replayed))
    );
    let _ = std::fs::remove_dir_all(dir);
}
