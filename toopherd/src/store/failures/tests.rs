use super::*;
use crate::store::tests::{LIMITS, T0, active, wrong_code};
use crate::store::{LoginState, Rejection, SCHEMA, SCHEMA_V2, Verdict};
use crate::totp::{code_at_step, step_of};
use toopher_ipc::Method;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("toopherd-failures-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn temp_db(name: &str) -> (std::path::PathBuf, Store) {
    let dir = temp_dir(name);
    let store = Store::open(&dir.join("db.sqlite3")).unwrap();
    (dir, store)
}

fn from<'a>(rhost: &'a str, own: &'a [i64]) -> Attempt<'a> {
    Attempt {
        rhost: Some(rhost),
        own,
        notify: true,
    }
}

/// `n` wrong codes from `rhost`, one a second from `at`; returns their ids.
fn fail(store: &mut Store, user: &str, at: u64, n: u64, rhost: &str) -> Vec<i64> {
    let secret = Store::account(&store.conn, user).unwrap().unwrap().secret;
    (0..n)
        .map(|i| {
            let at = at + i;
            let code = wrong_code(&secret, at);
            let c = store
                .check(user, &code, at, LIMITS, &from(rhost, &[]))
                .unwrap()
                .unwrap();
            assert_eq!(
                c.verdict,
                Verdict::Rejected(Rejection::Wrong),
                "{code} at {at}"
            );
            c.recorded.failure.unwrap()
        })
        .collect()
}

fn good(secret: &[u8], at: u64) -> String {
    code_at_step(secret, step_of(at)).unwrap().to_string()
}

#[test]
fn each_full_set_of_failures_doubles_the_lock_and_success_does_not_reset_it() {
    let (dir, mut store) = temp_db("escalate");
    let (secret, _) = active(&mut store, "bob");
    // First set: locked for the window, from the oldest failure of the set.
    fail(&mut store, "bob", T0 + 40, 5, "192.0.2.1");
    assert_eq!(
        store.rate_limited("bob", T0 + 45, LIMITS).unwrap(),
        Some(T0 + 340)
    );
    assert_eq!(store.lock_level("bob", T0).unwrap(), 1);
    // After it, one more failure does not lock again: a full new set is needed.
    fail(&mut store, "bob", T0 + 340, 4, "192.0.2.1");
    assert_eq!(store.rate_limited("bob", T0 + 344, LIMITS).unwrap(), None);
    // A success in between neither lifts the level nor forgets the set in progress.
    let at = T0 + 400;
    let c = store
        .check(
            "bob",
            &good(&secret, at),
            at,
            LIMITS,
            &from("192.0.2.9", &[]),
        )
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::Accepted(Method::Otp));
    assert_eq!(store.lock_level("bob", T0).unwrap(), 1);
    // The fifth failure of the second set: twice the window, from that set's oldest.
    fail(&mut store, "bob", T0 + 401, 1, "192.0.2.1");
    assert_eq!(
        store.rate_limited("bob", T0 + 402, LIMITS).unwrap(),
        Some(T0 + 340 + 600)
    );
    // Third set: four times.
    fail(&mut store, "bob", T0 + 940, 5, "192.0.2.1");
    assert_eq!(
        store.rate_limited("bob", T0 + 945, LIMITS).unwrap(),
        Some(T0 + 940 + 1200)
    );
    assert_eq!(store.lock_level("bob", T0).unwrap(), 3);
    let st = store.status("bob", "local", T0 + 945, LIMITS).unwrap();
    assert_eq!(st.locked_until, Some(T0 + 2140));
    assert_eq!(st.lock_level, 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_lock_stops_growing_at_a_day() {
    let (dir, mut store) = temp_db("cap");
    active(&mut store, "cap");
    let mut t = T0 + 10;
    let mut locks = Vec::new();
    for _ in 0..12 {
        fail(&mut store, "cap", t, 5, "192.0.2.1");
        let until = store.rate_limited("cap", t + 5, LIMITS).unwrap().unwrap();
        locks.push(until - t);
        t = until;
    }
    assert_eq!(
        locks,
        [
            300, 600, 1200, 2400, 4800, 9600, 19_200, 38_400, 76_800, 86_400, 86_400, 86_400
        ]
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A secret whose code at T0's step, the one its activation used, is "000000": once,
/// `the_lock_stops_growing_at_a_day` drew it and took "000000" for a wrong code at T0 + 10
/// (it was a replayed one).
#[test]
fn a_wrong_code_is_wrong_even_when_000000_is_a_right_one() {
    const SECRET: [u8; 20] = [
        0x70, 0xb8, 0xd8, 0xad, 0x1d, 0x6d, 0x06, 0x4c, 0x01, 0x20, 0x8c, 0xba, 0x66, 0x08, 0x09,
        0xf0, 0x67, 0xf1, 0x58, 0x9b,
    ];
    assert_eq!(
        code_at_step(&SECRET, step_of(T0)).unwrap().as_str(),
        "000000"
    );
    let (dir, mut store) = temp_db("zeros");
    active(&mut store, "zed");
    store
        .conn
        .execute(
            "UPDATE accounts SET secret = ?2 WHERE user = ?1",
            params!["zed", &SECRET[..]],
        )
        .unwrap();
    assert_eq!(
        store.verify("zed", "000000", T0 + 10, LIMITS).unwrap(),
        Some(Verdict::Rejected(Rejection::Replayed))
    );
    assert_ne!(wrong_code(&SECRET, T0 + 11), "000000");
    fail(&mut store, "zed", T0 + 11, 4, "192.0.2.1");
    assert_eq!(
        store.rate_limited("zed", T0 + 15, LIMITS).unwrap(),
        Some(T0 + 310)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_escalation_is_forgotten_after_two_quiet_weeks_but_not_before() {
    let (dir, mut store) = temp_db("decay");
    active(&mut store, "decay");
    fail(&mut store, "decay", T0 + 10, 5, "192.0.2.1");
    let first = store
        .rate_limited("decay", T0 + 15, LIMITS)
        .unwrap()
        .unwrap();
    fail(&mut store, "decay", first, 5, "192.0.2.1");
    let second = store
        .rate_limited("decay", first + 5, LIMITS)
        .unwrap()
        .unwrap();
    assert_eq!(second - first, 600);
    // A day before the two weeks are up, the next set still escalates.
    let soon = second + crate::budget::LEVEL_RESET_AFTER - 86_400;
    assert_eq!(store.lock_level("decay", soon).unwrap(), 2);
    fail(&mut store, "decay", soon, 5, "192.0.2.1");
    let third = store
        .rate_limited("decay", soon + 5, LIMITS)
        .unwrap()
        .unwrap();
    assert_eq!(third - soon, 1200);
    // Two weeks after the last lock ended, the next lock is `window` again.
    let later = third + crate::budget::LEVEL_RESET_AFTER;
    assert_eq!(store.lock_level("decay", later).unwrap(), 0);
    fail(&mut store, "decay", later, 5, "192.0.2.1");
    let fourth = store
        .rate_limited("decay", later + 5, LIMITS)
        .unwrap()
        .unwrap();
    assert_eq!(fourth - later, 300);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn while_locked_a_right_code_is_refused_and_a_recovery_code_lifts_the_lock() {
    let (dir, mut store) = temp_db("recovery");
    let (secret, codes) = active(&mut store, "carol");
    fail(&mut store, "carol", T0 + 40, 5, "192.0.2.1");
    fail(&mut store, "carol", T0 + 340, 5, "192.0.2.1");
    assert_eq!(store.lock_level("carol", T0).unwrap(), 2);
    let at = T0 + 400;
    // The right one-time password is not looked at, not recorded, and uses no step.
    let c = store
        .check(
            "carol",
            &good(&secret, at),
            at,
            LIMITS,
            &from("192.0.2.1", &[]),
        )
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::RateLimited { until: T0 + 940 });
    assert_eq!(c.recorded, Recorded::default());
    // A wrong recovery code is a failure to tell, but does not lengthen the lock.
    let c = store
        .check(
            "carol",
            "aaaa-bbbb-cccc",
            at + 1,
            LIMITS,
            &from("192.0.2.2", &[]),
        )
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::Rejected(Rejection::Wrong));
    assert_eq!(
        store.rate_limited("carol", at + 2, LIMITS).unwrap(),
        Some(T0 + 940)
    );
    // A recovery code is accepted while locked: the lock and its escalation end.
    let c = store
        .check("carol", &codes[0], at + 3, LIMITS, &from("192.0.2.9", &[]))
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::Accepted(Method::RecoveryCode));
    assert_eq!(store.rate_limited("carol", at + 3, LIMITS).unwrap(), None);
    assert_eq!(store.lock_level("carol", T0).unwrap(), 0);
    let at = at + 31;
    assert_eq!(
        store
            .verify("carol", &good(&secret, at), at, LIMITS)
            .unwrap(),
        Some(Verdict::Accepted(Method::Otp))
    );
    // The next set of failures starts from the window again.
    fail(&mut store, "carol", at + 1, 5, "192.0.2.1");
    assert_eq!(
        store.rate_limited("carol", at + 6, LIMITS).unwrap(),
        Some(at + 1 + 300)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_administrators_unlock_lifts_the_lock_and_its_escalation() {
    let (dir, mut store) = temp_db("unlock");
    let (secret, _) = active(&mut store, "dave");
    fail(&mut store, "dave", T0 + 40, 5, "192.0.2.1");
    fail(&mut store, "dave", T0 + 340, 5, "192.0.2.1");
    assert!(store.unlock("dave", T0 + 400, LIMITS).unwrap());
    assert_eq!(store.rate_limited("dave", T0 + 400, LIMITS).unwrap(), None);
    assert_eq!(store.lock_level("dave", T0).unwrap(), 0);
    let at = T0 + 400;
    assert_eq!(
        store
            .verify("dave", &good(&secret, at), at, LIMITS)
            .unwrap(),
        Some(Verdict::Accepted(Method::Otp))
    );
    assert!(!store.unlock("dave", T0 + 401, LIMITS).unwrap());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_success_tells_the_failures_since_the_last_one_once() {
    let (dir, mut store) = temp_db("notice");
    let (secret, _) = active(&mut store, "erin");
    fail(&mut store, "erin", T0 + 40, 2, "192.0.2.1");
    fail(&mut store, "erin", T0 + 50, 1, "198.51.100.4");
    store
        .note_result("erin", false, T0 + 60, LIMITS, &Attempt::default())
        .unwrap();
    // This login's own mistake is no news to the person (and, with the others out of
    // the window by now, locks nothing).
    let own = fail(&mut store, "erin", T0 + 400, 1, "203.0.113.5");
    let at = T0 + 401;
    let c = store
        .check(
            "erin",
            &good(&secret, at),
            at,
            LIMITS,
            &from("203.0.113.5", &own),
        )
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::Accepted(Method::Otp));
    assert_eq!(
        c.recorded.notice,
        Some(FailureNotice {
            failures: 4,
            rhosts: vec![
                NOTICE_LOCAL.into(),
                "198.51.100.4".into(),
                "192.0.2.1".into()
            ],
            more_rhosts: false,
            last_at: Some(T0 + 60),
        })
    );
    // Told once: the next success has nothing to tell.
    let at = at + 30;
    let c = store
        .check(
            "erin",
            &good(&secret, at),
            at,
            LIMITS,
            &from("203.0.113.5", &[]),
        )
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::Accepted(Method::Otp));
    assert_eq!(c.recorded.notice, None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_login_that_cannot_show_the_notice_leaves_it_for_the_next() {
    let (dir, mut store) = temp_db("silent");
    let (secret, _) = active(&mut store, "fay");
    fail(&mut store, "fay", T0 + 40, 2, "192.0.2.1");
    let at = T0 + 60;
    let silent = Attempt {
        rhost: None,
        own: &[],
        notify: false,
    };
    let c = store
        .check("fay", &good(&secret, at), at, LIMITS, &silent)
        .unwrap()
        .unwrap();
    assert_eq!(c.recorded.notice, None);
    let at = at + 30;
    let c = store
        .check(
            "fay",
            &good(&secret, at),
            at,
            LIMITS,
            &from("192.0.2.9", &[]),
        )
        .unwrap()
        .unwrap();
    assert_eq!(c.recorded.notice.map(|n| n.failures), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_notice_is_bounded_but_its_count_is_not_lost() {
    let (dir, mut store) = temp_db("bounded");
    let (secret, _) = active(&mut store, "gus");
    let limits = Limits {
        max_failures: 1000,
        window: 10,
    };
    for i in 0..300u64 {
        let rhost = format!("10.0.{}.{}", i / 250, i % 250);
        let at = T0 + 40 + i;
        let c = store
            .check(
                "gus",
                &wrong_code(&secret, at),
                at,
                limits,
                &from(&rhost, &[]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(c.verdict, Verdict::Rejected(Rejection::Wrong));
    }
    let rows: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM failures WHERE user = 'gus'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(rows <= 1000, "{rows}");
    let at = T0 + 400;
    let c = store
        .check(
            "gus",
            &good(&secret, at),
            at,
            limits,
            &from("192.0.2.9", &[]),
        )
        .unwrap()
        .unwrap();
    let n = c.recorded.notice.unwrap();
    assert_eq!(n.failures, 300);
    assert_eq!(n.rhosts.len(), NOTICE_MAX_RHOSTS);
    assert_eq!(n.rhosts[0], "10.0.1.49");
    assert!(n.more_rhosts);
    assert_eq!(n.last_at, Some(T0 + 339));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn failures_and_their_escalation_are_kept_apart_per_user_and_survive_a_reopen() {
    let dir = temp_dir("reopen");
    let path = dir.join("db.sqlite3");
    {
        let mut store = Store::open(&path).unwrap();
        active(&mut store, "hal");
        active(&mut store, "ivy");
        fail(&mut store, "hal", T0 + 40, 5, "192.0.2.1");
        fail(&mut store, "hal", T0 + 340, 5, "192.0.2.1");
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.rate_limited("hal", T0 + 400, LIMITS).unwrap(),
        Some(T0 + 940)
    );
    assert_eq!(store.lock_level("hal", T0).unwrap(), 2);
    assert_eq!(store.rate_limited("ivy", T0 + 400, LIMITS).unwrap(), None);
    assert_eq!(store.lock_level("ivy", T0).unwrap(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// The version-2 schema exactly as the previous release created it.
fn old_database(path: &std::path::Path, user: &str, failures_at: &[u64]) {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    conn.execute_batch(SCHEMA_V2).unwrap();
    conn.execute(
        "INSERT INTO accounts (user, state, secret, recovery_salt, created_at, activated_at, last_step)
         VALUES (?1, 'active', ?2, ?3, ?4, ?4, ?5)",
        params![
            user,
            &[7u8; 20][..],
            &[1u8; 16][..],
            to_i64(T0),
            to_i64(step_of(T0))
        ],
    )
    .unwrap();
    for at in failures_at {
        conn.execute(
            "INSERT INTO failures (user, at) VALUES (?1, ?2)",
            params![user, to_i64(*at)],
        )
        .unwrap();
    }
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2);
}

#[test]
fn a_version_2_database_is_upgraded_in_place_and_keeps_its_lock() {
    let dir = temp_dir("upgrade");
    let path = dir.join("db.sqlite3");
    // Locked under the old rule: five failures inside the window.
    old_database(&path, "jan", &[T0 + 40, T0 + 41, T0 + 42, T0 + 43, T0 + 44]);
    let mut store = Store::open(&path).unwrap();
    let v: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 3);
    let secret = [7u8; 20];
    // Still locked until the oldest failure leaves the window, as before.
    assert_eq!(
        store.login_state("jan", T0 + 60, LIMITS).unwrap(),
        LoginState::RateLimited { until: T0 + 340 }
    );
    let at = T0 + 60;
    assert_eq!(
        store.verify("jan", &good(&secret, at), at, LIMITS).unwrap(),
        Some(Verdict::RateLimited { until: T0 + 340 })
    );
    // That lock now counts: the next full set doubles.
    assert_eq!(store.lock_level("jan", T0).unwrap(), 1);
    fail(&mut store, "jan", T0 + 340, 5, "192.0.2.1");
    assert_eq!(
        store.rate_limited("jan", T0 + 345, LIMITS).unwrap(),
        Some(T0 + 940)
    );
    // The old failures are told at the next success with the new ones.
    let at = T0 + 950;
    let c = store
        .check(
            "jan",
            &good(&secret, at),
            at,
            LIMITS,
            &from("192.0.2.9", &[]),
        )
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::Accepted(Method::Otp));
    let n = c.recorded.notice.unwrap();
    assert_eq!(n.failures, 10);
    assert_eq!(n.rhosts, vec!["192.0.2.1".to_string(), NOTICE_LOCAL.into()]);
    // Opening again changes nothing.
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.lock_level("jan", T0).unwrap(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_version_1_database_is_upgraded_too() {
    let dir = temp_dir("upgrade1");
    let path = dir.join("db.sqlite3");
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO failures (user, at) VALUES ('kim', ?1)",
            params![to_i64(T0)],
        )
        .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    assert!(store.is_suspended("kim").is_ok());
    assert_eq!(store.lock_level("kim", T0).unwrap(), 0);
    let r = store
        .note_result("kim", true, T0 + 5, LIMITS, &from("192.0.2.9", &[]))
        .unwrap();
    assert_eq!(r.notice.map(|n| n.failures), Some(1));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_lift_in_the_same_second_as_the_failures_still_lifts() {
    let (dir, mut store) = temp_db("same-second");
    let short = Limits {
        max_failures: 2,
        window: 10,
    };
    let (secret, codes) = active(&mut store, "lou");
    let code = wrong_code(&secret, T0);
    let wrong = |store: &mut Store| {
        store
            .check("lou", &code, T0, short, &from("192.0.2.1", &[]))
            .unwrap()
            .unwrap()
            .verdict
    };
    for _ in 0..2 {
        assert_eq!(wrong(&mut store), Verdict::Rejected(Rejection::Wrong));
    }
    assert_eq!(store.lock_level("lou", T0).unwrap(), 1);
    assert!(store.unlock("lou", T0, short).unwrap());
    assert_eq!(store.rate_limited("lou", T0, short).unwrap(), None);
    // The next failure starts a new set.
    assert_eq!(wrong(&mut store), Verdict::Rejected(Rejection::Wrong));
    assert_eq!(store.rate_limited("lou", T0, short).unwrap(), None);
    assert_eq!(wrong(&mut store), Verdict::Rejected(Rejection::Wrong));
    assert_eq!(store.rate_limited("lou", T0, short).unwrap(), Some(T0 + 10));
    let c = store
        .check("lou", &codes[1], T0, short, &from("192.0.2.1", &[]))
        .unwrap()
        .unwrap();
    assert_eq!(c.verdict, Verdict::Accepted(Method::RecoveryCode));
    assert_eq!(store.rate_limited("lou", T0, short).unwrap(), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_round_query_is_parsed_once_not_at_every_binding() {
    let (dir, mut store) = temp_db("reprepare");
    active(&mut store, "rita");
    // Failures at different times: the round's query is bound to new values each time.
    fail(&mut store, "rita", T0 + 100, 3, "192.0.2.1");
    fail(&mut store, "rita", T0 + 200, 1, "192.0.2.1");
    let stmt = store.conn.prepare_cached(super::ROUND).unwrap();
    assert_eq!(
        stmt.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "SQLite parsed the statement again for new bindings"
    );
    drop(stmt);
    let _ = std::fs::remove_dir_all(dir);
}
