//! The fleet store (toopherd::fleet::pg) against a real PostgreSQL: a temporary cluster
//! from Debian's packages (toopher_tests::postgres), and two "hosts", two store handles
//! on one database, as two toopherd would have. A step accepted by one is refused by the
//! other, failures on both add up to one lock, a recovery code counts once, a race of one
//! code on both hosts has exactly one winner, a dump holds no secret, a secret moved onto
//! another user does not open, the schema is versioned, a wrong key and a wrong password
//! are told in plain words, TLS verify-full, and a database that goes away and comes back.
//! (Root: the cluster runs as the `postgres` user; the codes come from oathtool.)

use std::sync::Arc;
use std::time::{Duration, Instant};
use toopher_ipc::Method;
use toopher_tests::otp;
use toopher_tests::postgres::TempPostgres;
use toopherd::fleet::pg::{PgError, PgSettings, PgStore, Timeouts};
use toopherd::fleet::seal::{FleetKey, Keyring};
use toopherd::store::{
    ApproveError, Attempt, Limits, LoginState, RegistrationCheck, Rejection, Verdict,
};
use zeroize::Zeroizing;

const LIMITS: Limits = Limits {
    max_failures: 5,
    window: 300,
};
/// A fixed clock for the stores; the codes are computed by oathtool at the same times.
const T0: u64 = 1_800_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn keyring(id: u32, fill: u8) -> Arc<Keyring> {
    Arc::new(Keyring::new(FleetKey::new(id, Zeroizing::new([fill; 32])), vec![]).expect("keyring"))
}

fn settings(pg: &TempPostgres, url: String, host: &str) -> PgSettings {
    PgSettings {
        url,
        ca_file: pg.ca_file.clone(),
        password: Some(Zeroizing::new(pg.password.clone())),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            query: Duration::from_secs(3),
        },
        pool_size: 4,
        host: host.into(),
    }
}

/// Hosts A and B on one database, over the unix socket and over TCP.
async fn two_hosts(pg: &TempPostgres) -> (PgStore, PgStore) {
    let key = keyring(1, 7);
    let a = PgStore::open(&settings(pg, pg.url_socket(), "host-a"), key.clone(), T0)
        .await
        .expect("host A opens the store");
    let b = PgStore::open(&settings(pg, pg.url_tcp(), "host-b"), key, T0)
        .await
        .expect("host B opens the store");
    (a, b)
}

/// Enrols `user` on `host` and activates it at T0; returns the base32 secret.
async fn enrolled(host: &PgStore, user: &str) -> String {
    let e = host.enroll(user, 600, T0, false).await.expect("enroll");
    let b32 = toopherd::totp::base32(&e.secret).to_string();
    let code = otp::totp_at(&b32, T0);
    assert_eq!(
        host.activate(user, &code, T0, LIMITS)
            .await
            .expect("activate"),
        Verdict::Accepted(Method::Otp)
    );
    assert_eq!(e.recovery_codes.len(), 10);
    b32
}

async fn verdict(host: &PgStore, user: &str, code: &str, now: u64) -> Verdict {
    host.verify(user, code, now, LIMITS)
        .await
        .expect("verify")
        .expect("an active enrolment")
}

#[test]
fn an_enrolment_on_one_host_works_on_the_other_and_a_step_counts_once() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let secret = enrolled(&a, "alice").await;
        let t1 = T0 + 30;
        let code = otp::totp_at(&secret, t1);
        assert_eq!(
            verdict(&b, "alice", &code, t1).await,
            Verdict::Accepted(Method::Otp)
        );
        // The same step on the other host, and again on the same one: replayed.
        assert_eq!(
            verdict(&a, "alice", &code, t1).await,
            Verdict::Rejected(Rejection::Replayed)
        );
        assert_eq!(
            verdict(&b, "alice", &code, t1).await,
            Verdict::Rejected(Rejection::Replayed)
        );
        // The activation's step is used up too, everywhere.
        let first = otp::totp_at(&secret, T0);
        assert_eq!(
            verdict(&b, "alice", &first, T0 + 10).await,
            Verdict::Rejected(Rejection::Replayed)
        );
        let t2 = T0 + 60;
        assert_eq!(
            verdict(&a, "alice", &otp::totp_at(&secret, t2), t2).await,
            Verdict::Accepted(Method::Otp)
        );
        // Status on either host shows the last success with the host that made it.
        let st = b
            .status("alice", "local", t2, LIMITS)
            .await
            .expect("status");
        assert_eq!(st.status.last_success_at, Some(t2));
        assert_eq!(st.last_success_host.as_deref(), Some("host-a"));
        assert!(matches!(
            b.login_state("alice", t2, LIMITS).await.expect("state"),
            LoginState::Active
        ));
        // An existing enrolment is not replaced from the other host without force.
        assert!(matches!(
            b.enroll("alice", 600, t2, false).await,
            Err(PgError::AlreadyActive)
        ));
    });
}

#[test]
fn failures_on_both_hosts_add_up_to_one_lock() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let secret = enrolled(&a, "bob").await;
        let t = T0 + 100;
        let wrong = (0..100)
            .map(|i| format!("{:06}", 24_680 + i * 7_919))
            .find(|c| (T0 / 30 - 2..=t / 30 + 2).all(|s| otp::totp_step(&secret, s) != *c))
            .expect("a wrong code");
        for (i, host) in [&a, &b, &a, &b].into_iter().enumerate() {
            let now = t + i as u64;
            let c = host
                .check("bob", &wrong, now, LIMITS, &Attempt::default())
                .await
                .expect("check")
                .expect("enrolled");
            assert_eq!(c.verdict, Verdict::Rejected(Rejection::Wrong));
            assert!(c.recorded.failure.is_some());
            assert_eq!(a.rate_limited("bob", now, LIMITS).await.expect("rl"), None);
        }
        // The fifth, on B, locks the user on both hosts: a right code is not looked at.
        assert_eq!(
            verdict(&b, "bob", &wrong, t + 4).await,
            Verdict::Rejected(Rejection::Wrong)
        );
        let right = otp::totp_at(&secret, t + 5);
        for host in [&a, &b] {
            assert!(matches!(
                verdict(host, "bob", &right, t + 5).await,
                Verdict::RateLimited { .. }
            ));
            assert!(matches!(
                host.login_state("bob", t + 5, LIMITS).await.expect("state"),
                LoginState::RateLimited { .. }
            ));
        }
        let st = a
            .status("bob", "local", t + 5, LIMITS)
            .await
            .expect("status");
        assert_eq!(st.last_failure_host.as_deref(), Some("host-b"));
        assert_eq!(st.status.lock_level, 1);
        // An administrator's unlock on A frees the user on B.
        assert!(a.unlock("bob", t + 6, LIMITS).await.expect("unlock"));
        let c = b
            .check(
                "bob",
                &otp::totp_at(&secret, t + 7),
                t + 7,
                LIMITS,
                &Attempt {
                    notify: true,
                    ..Attempt::default()
                },
            )
            .await
            .expect("check")
            .expect("enrolled");
        assert_eq!(c.verdict, Verdict::Accepted(Method::Otp));
        // The person is told of the five failures, from both hosts' logins.
        assert_eq!(c.recorded.notice.map(|n| n.failures), Some(5));
    });
}

#[test]
fn a_recovery_code_used_on_one_host_is_refused_on_the_other() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let e = a.enroll("carol", 600, T0, false).await.expect("enroll");
        let b32 = toopherd::totp::base32(&e.secret).to_string();
        assert_eq!(
            b.activate("carol", &otp::totp_at(&b32, T0), T0, LIMITS)
                .await
                .expect("activate on the other host"),
            Verdict::Accepted(Method::Otp)
        );
        let code = e.recovery_codes[3].to_string();
        assert_eq!(
            verdict(&a, "carol", &code, T0 + 1).await,
            Verdict::Accepted(Method::RecoveryCode)
        );
        assert_eq!(
            verdict(&b, "carol", &code, T0 + 2).await,
            Verdict::Rejected(Rejection::RecoveryCodeUsed)
        );
        let st = b
            .status("carol", "local", T0 + 2, LIMITS)
            .await
            .expect("status");
        assert_eq!(st.status.recovery_codes_left, 9);
        // Regenerated on B: the old codes stop working on A.
        let fresh = b
            .regenerate_recovery_codes("carol")
            .await
            .expect("regenerate");
        assert_eq!(
            verdict(&a, "carol", &e.recovery_codes[4], T0 + 3).await,
            Verdict::Rejected(Rejection::Wrong)
        );
        assert_eq!(
            verdict(&a, "carol", &fresh[0], T0 + 4).await,
            Verdict::Accepted(Method::RecoveryCode)
        );
    });
}

#[test]
fn a_code_raced_on_both_hosts_wins_exactly_once() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let (a, b) = (Arc::new(a), Arc::new(b));
        let secret = enrolled(&a, "dave").await;
        // Each round's loser is a replay, which counts as a failure: a limit that 100
        // rounds do not reach, so every round is decided on the code.
        const LIMITS: Limits = Limits {
            max_failures: 1000,
            window: 300,
        };
        for round in 1..=100u64 {
            let now = T0 + round * 30;
            let code = otp::totp_at(&secret, now);
            let (ra, rb) = tokio::join!(
                tokio::spawn({
                    let (a, code) = (a.clone(), code.clone());
                    async move { a.verify("dave", &code, now, LIMITS).await }
                }),
                tokio::spawn({
                    let (b, code) = (b.clone(), code.clone());
                    async move { b.verify("dave", &code, now, LIMITS).await }
                }),
            );
            let verdicts = [
                ra.expect("task").expect("verify").expect("enrolled"),
                rb.expect("task").expect("verify").expect("enrolled"),
            ];
            let wins = verdicts
                .iter()
                .filter(|v| **v == Verdict::Accepted(Method::Otp))
                .count();
            assert_eq!(wins, 1, "round {round}: {verdicts:?}");
            assert!(
                verdicts.contains(&Verdict::Rejected(Rejection::Replayed)),
                "round {round}: {verdicts:?}"
            );
        }
    });
}

#[test]
fn a_dump_holds_no_secret_and_a_moved_secret_does_not_open() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let e = a.enroll("erin", 600, T0, false).await.expect("enroll");
        let b32 = toopherd::totp::base32(&e.secret).to_string();
        a.activate("erin", &otp::totp_at(&b32, T0), T0, LIMITS)
            .await
            .expect("activate");
        let frank = enrolled(&a, "frank").await;

        let dump = pg.dump();
        assert!(
            dump.contains("COPY public.accounts"),
            "not a dump of the store"
        );
        let hex: String = e.secret.iter().map(|x| format!("{x:02x}")).collect();
        for needle in [b32.as_str(), hex.as_str(), frank.as_str()] {
            assert!(!dump.contains(needle), "the dump holds a secret in clear");
            assert!(!dump.to_uppercase().contains(&needle.to_uppercase()));
        }
        for code in &e.recovery_codes {
            assert!(
                !dump.contains(code.as_str()),
                "the dump holds a recovery code"
            );
        }

        // Erin's sealed secret copied onto Frank's row: Frank's logins are denied, as a
        // store failure (not "unreachable", so failmode never lets them through).
        pg.psql_admin_in(
            toopher_tests::postgres::DATABASE,
            "UPDATE accounts SET secret = (SELECT secret FROM accounts WHERE user_name = 'erin')
             WHERE user_name = 'frank'",
        );
        let now = T0 + 30;
        for code in [otp::totp_at(&b32, now), otp::totp_at(&frank, now)] {
            match b.verify("frank", &code, now, LIMITS).await {
                Err(err @ PgError::Seal { .. }) => {
                    assert!(!err.is_unreachable());
                    assert!(err.to_string().contains("does not decrypt"), "{err}");
                }
                other => panic!("a moved secret gave {other:?}"),
            }
        }
        // Erin is untouched.
        assert_eq!(
            verdict(&b, "erin", &otp::totp_at(&b32, now), now).await,
            Verdict::Accepted(Method::Otp)
        );
    });
}

#[test]
fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let pg = TempPostgres::start();
    let db = toopher_tests::postgres::DATABASE;
    runtime().block_on(async {
        let (a, _) = two_hosts(&pg).await;
        a.check_config().await.expect("a fresh schema checks out");
    });
    assert_eq!(
        pg.psql_admin_in(
            db,
            "SELECT version, applied_by FROM toopher_schema ORDER BY version"
        )
        .trim(),
        "1|host-a\n2|host-a"
    );
    pg.psql_admin_in(
        db,
        "INSERT INTO toopher_schema VALUES (99, 0, 'a newer toopherd')",
    );
    runtime().block_on(async {
        let key = keyring(1, 7);
        match PgStore::open(&settings(&pg, pg.url_tcp(), "host-c"), key.clone(), T0).await {
            Err(e @ PgError::SchemaTooNew { found: 99, .. }) => {
                assert!(e.to_string().contains("newer than this toopherd"), "{e}")
            }
            other => panic!("a newer schema gave {other:?}"),
        }
        let store = PgStore::connect(&settings(&pg, pg.url_tcp(), "host-c"), key).expect("connect");
        assert!(matches!(
            store.check_config().await,
            Err(PgError::SchemaTooNew { found: 99, .. })
        ));
    });
    // Nothing was changed by the refusal.
    assert_eq!(
        pg.psql_admin_in(db, "SELECT count(*) FROM toopher_schema")
            .trim(),
        "3"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Recovery codes are keyed with the account's secret, which only the fleet key opens:
/// someone with database access alone cannot add a code that works (the salted hash of a
/// code of their choosing is refused). A schema 1 database, whose hashes are not keyed, is
/// keyed once by the upgrade, and its codes keep working.
#[test]
fn recovery_codes_are_keyed_and_an_upgrade_keys_the_old_ones() {
    use toopherd::recovery;
    let pg = TempPostgres::start();
    let db = toopher_tests::postgres::DATABASE;
    let codes = runtime().block_on(async {
        let (a, _) = two_hosts(&pg).await;
        let e = a.enroll("quinn", 600, T0, false).await.expect("enroll");
        let b32 = toopherd::totp::base32(&e.secret).to_string();
        assert_eq!(
            a.activate("quinn", &otp::totp_at(&b32, T0), T0, LIMITS)
                .await
                .expect("activate"),
            Verdict::Accepted(Method::Otp)
        );
        e.recovery_codes
    });
    let salt = unhex(
        pg.psql_admin_in(
            db,
            "SELECT encode(recovery_salt, 'hex') FROM accounts WHERE user_name = 'quinn'",
        )
        .trim(),
    );
    let unkeyed = |code: &str| {
        hex(&recovery::hash(
            &salt,
            &recovery::normalize(code).expect("code"),
        ))
    };
    let chosen = "aaaa-bbbb-cccc";
    pg.psql_admin_in(
        db,
        &format!(
            "INSERT INTO recovery_codes (user_name, hash) VALUES ('quinn', decode('{}', 'hex'))",
            unkeyed(chosen)
        ),
    );
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        for host in [&a, &b] {
            assert_eq!(
                verdict(host, "quinn", chosen, T0 + 1).await,
                Verdict::Rejected(Rejection::Wrong)
            );
        }
    });
    // The database as schema 1 left it: the real codes hashed but not keyed.
    pg.psql_admin_in(db, "DELETE FROM recovery_codes WHERE user_name = 'quinn'");
    for code in &codes[..2] {
        pg.psql_admin_in(
            db,
            &format!(
                "INSERT INTO recovery_codes (user_name, hash) VALUES ('quinn', decode('{}', 'hex'))",
                unkeyed(code)
            ),
        );
    }
    pg.psql_admin_in(db, "DELETE FROM toopher_schema WHERE version = 2");
    runtime().block_on(async {
        // The upgrade keys them: the codes work, once, on either host.
        let (a, b) = two_hosts(&pg).await;
        assert_eq!(
            verdict(&a, "quinn", &codes[0], T0 + 2).await,
            Verdict::Accepted(Method::RecoveryCode)
        );
        assert_eq!(
            verdict(&b, "quinn", &codes[1], T0 + 3).await,
            Verdict::Accepted(Method::RecoveryCode)
        );
        assert_eq!(
            verdict(&b, "quinn", &codes[0], T0 + 4).await,
            Verdict::Rejected(Rejection::RecoveryCodeUsed)
        );
    });
    assert_eq!(
        pg.psql_admin_in(db, "SELECT max(version) FROM toopher_schema")
            .trim(),
        "2"
    );
}

#[test]
fn wrong_keys_and_passwords_are_told_and_rotation_keeps_secrets() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, _) = two_hosts(&pg).await;
        let secret = enrolled(&a, "gina").await;
        // Another key under the fleet's key id: refused at start, in plain words.
        match PgStore::open(&settings(&pg, pg.url_tcp(), "host-c"), keyring(1, 8), T0).await {
            Err(e @ PgError::WrongKey { key_id: 1 }) => {
                assert!(e.to_string().contains("copy the credentials file"), "{e}")
            }
            other => panic!("a wrong key gave {other:?}"),
        }
        // A wrong password.
        let mut bad = settings(&pg, pg.url_tcp(), "host-c");
        bad.password = Some(Zeroizing::new("not the password".into()));
        match PgStore::open(&bad, keyring(1, 7), T0).await {
            Err(e @ PgError::AuthenticationFailed(_)) => assert!(!e.is_unreachable()),
            other => panic!("a wrong password gave {other:?}"),
        }
        // A new current key with the old one kept: old secrets open, new ones use key 2.
        let rotated = Arc::new(
            Keyring::new(
                FleetKey::new(2, Zeroizing::new([9; 32])),
                vec![FleetKey::new(1, Zeroizing::new([7; 32]))],
            )
            .expect("keyring"),
        );
        let c = PgStore::open(&settings(&pg, pg.url_tcp(), "host-c"), rotated.clone(), T0)
            .await
            .expect("a rotated keyring opens");
        let t = T0 + 30;
        assert_eq!(
            verdict(&c, "gina", &otp::totp_at(&secret, t), t).await,
            Verdict::Accepted(Method::Otp)
        );
        let e = c.enroll("hank", 600, t, false).await.expect("enroll");
        let hex = pg.psql_admin_in(
            toopher_tests::postgres::DATABASE,
            "SELECT encode(substr(secret, 4, 4), 'hex') FROM accounts WHERE user_name = 'hank'",
        );
        assert_eq!(
            hex.trim(),
            "00000002",
            "new secrets are sealed with the current key"
        );
        drop(e);
        // A host that only has key 1 cannot open hank's secret, and says why.
        let b32 = toopherd::totp::base32(
            &c.enroll("ivan", 600, t, false)
                .await
                .expect("enroll")
                .secret,
        )
        .to_string();
        match a.activate("ivan", &otp::totp_at(&b32, t), t, LIMITS).await {
            Err(e @ PgError::Seal { .. }) => assert!(e.to_string().contains("fleet key 2"), "{e}"),
            other => panic!("an unknown key gave {other:?}"),
        }
    });
}

#[test]
fn tls_verify_full_with_the_test_ca() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let s = settings(&pg, pg.url_tcp(), "host-tls");
        let store = PgStore::open(&s, keyring(1, 7), T0)
            .await
            .expect("verify-full against the test CA");
        enrolled(&store, "judy").await;
        // Plain TCP is refused by toopherd itself, loopback or not, before connecting:
        // a local user could listen on the port while the server is down.
        let plain = settings(&pg, pg.url_plain_tcp(), "h");
        match PgStore::open(&plain, keyring(1, 7), T0).await {
            Err(e) => assert!(e.to_string().contains("unix socket"), "{e}"),
            Ok(_) => panic!("plain TCP to the database was accepted"),
        }
        // A CA that did not sign the server's certificate: no connection.
        let other_ca = std::env::temp_dir().join(format!("fleet-other-ca-{}", std::process::id()));
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("ca");
        std::fs::write(&other_ca, ca.cert.pem()).expect("write");
        let mut wrong = settings(&pg, pg.url_tcp(), "h");
        wrong.ca_file = Some(other_ca.clone());
        let r = PgStore::open(&wrong, keyring(1, 7), T0).await;
        let _ = std::fs::remove_file(&other_ca);
        match r {
            Err(e) => assert!(e.is_unreachable(), "{e}"),
            Ok(_) => panic!("a server certificate from another CA was accepted"),
        }
    });
}

#[test]
fn a_database_that_goes_away_is_unreachable_within_bounds_then_found_again() {
    let mut pg = TempPostgres::start();
    let rt = runtime();
    let (a, b) = rt.block_on(two_hosts(&pg));
    let secret = rt.block_on(enrolled(&a, "kate"));
    pg.stop();
    let t = T0 + 30;
    let code = otp::totp_at(&secret, t);
    for host in [&a, &b] {
        let started = Instant::now();
        match rt.block_on(host.verify("kate", &code, t, LIMITS)) {
            Err(e) => assert!(e.is_unreachable(), "{e}"),
            Ok(v) => panic!("a stopped database answered {v:?}"),
        }
        // Connect (2 s) and query (3 s) bounds, with room for a slow machine.
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }
    pg.restart();
    // The same stores connect again by themselves; nothing was lost or half-done.
    assert_eq!(
        rt.block_on(verdict(&b, "kate", &code, t)),
        Verdict::Accepted(Method::Otp)
    );
    assert_eq!(
        rt.block_on(verdict(&a, "kate", &code, t)),
        Verdict::Rejected(Rejection::Replayed)
    );
}

#[test]
fn registrations_and_suspension_hold_on_every_host() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let (code, expires) = a
            .start_registration("liam", 600, T0)
            .await
            .expect("start")
            .expect("not rate limited");
        assert_eq!(expires, T0 + 600);
        assert_eq!(
            b.approve_registration("mona", &code, "root", T0 + 1)
                .await
                .expect("approve"),
            Err(ApproveError::NoRegistration)
        );
        let response = b
            .approve_registration("liam", &code, "root", T0 + 2)
            .await
            .expect("approve")
            .expect("the right code");
        assert_eq!(
            a.check_registration("liam", &response, T0 + 3)
                .await
                .expect("check"),
            RegistrationCheck::Registered
        );
        assert_eq!(
            b.check_registration("liam", &response, T0 + 4)
                .await
                .expect("check"),
            RegistrationCheck::Failed
        );

        enrolled(&a, "nina").await;
        a.set_suspended("nina", true, T0 + 5)
            .await
            .expect("suspend");
        assert!(matches!(
            b.login_state("nina", T0 + 6, LIMITS).await.expect("state"),
            LoginState::Suspended
        ));
        assert!(
            !b.status("nina", "local", T0 + 6, LIMITS)
                .await
                .expect("st")
                .status
                .enabled
        );
        b.set_suspended("nina", false, T0 + 7)
            .await
            .expect("enable");
        assert!(matches!(
            a.login_state("nina", T0 + 8, LIMITS).await.expect("state"),
            LoginState::Active
        ));
        assert_eq!(a.users().await.expect("users"), ["nina"]);
        assert!(b.forget("nina").await.expect("forget"));
        assert!(matches!(
            a.login_state("nina", T0 + 9, LIMITS).await.expect("state"),
            LoginState::NotEnrolled
        ));
    });
}

#[test]
fn rotate_key_reseals_every_secret_with_the_current_key() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, _) = two_hosts(&pg).await;
        let olga = enrolled(&a, "olga").await;
        let paul = enrolled(&a, "paul").await;
        let rotated = Arc::new(
            Keyring::new(
                FleetKey::new(2, Zeroizing::new([9; 32])),
                vec![FleetKey::new(1, Zeroizing::new([7; 32]))],
            )
            .expect("keyring"),
        );
        let c = PgStore::open(&settings(&pg, pg.url_tcp(), "host-c"), rotated, T0)
            .await
            .expect("open with the new key");
        let report = c.rotate_key(T0 + 1).await.expect("rotate");
        assert_eq!(report.resealed, 2);
        assert!(report.failed.is_empty());
        // Twice: nothing left to do.
        assert_eq!(c.rotate_key(T0 + 2).await.expect("rotate").resealed, 0);
        // The old key can go now: a host with only the new key opens both secrets.
        let d = PgStore::open(&settings(&pg, pg.url_tcp(), "host-d"), keyring(2, 9), T0)
            .await
            .expect("open with only the new key");
        let t = T0 + 30;
        for (user, secret) in [("olga", &olga), ("paul", &paul)] {
            assert_eq!(
                verdict(&d, user, &otp::totp_at(secret, t), t).await,
                Verdict::Accepted(Method::Otp)
            );
        }
    });
}

#[test]
fn importing_a_hosts_sqlite_store_twice() {
    use toopherd::store::Store;
    let pg = TempPostgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("toopherd.sqlite3");
    // A host's own store: quinn enrolled, one step and one recovery code used; rita
    // suspended; sam pending; zed enrolled here and (differently) in the fleet.
    let (quinn, quinn_codes, zed_local) = {
        let mut s = Store::open(&db).expect("sqlite store");
        let mut activate = |user: &str| {
            let e = s.enroll(user, 600, T0, false).expect("enroll");
            let b32 = toopherd::totp::base32(&e.secret).to_string();
            assert_eq!(
                s.activate(user, &otp::totp_at(&b32, T0), T0, LIMITS)
                    .expect("activate"),
                Verdict::Accepted(Method::Otp)
            );
            (b32, e.recovery_codes)
        };
        let (quinn, codes) = activate("quinn");
        let (zed, _) = activate("zed");
        let t = T0 + 30;
        assert_eq!(
            s.verify("quinn", &otp::totp_at(&quinn, t), t, LIMITS)
                .expect("verify"),
            Some(Verdict::Accepted(Method::Otp))
        );
        assert_eq!(
            s.verify("quinn", &codes[0], t, LIMITS).expect("verify"),
            Some(Verdict::Accepted(Method::RecoveryCode))
        );
        s.enroll("sam", 600, T0, false).expect("pending");
        s.set_suspended("rita", true, T0).expect("suspend");
        (quinn, codes, zed)
    };
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let zed_fleet = enrolled(&b, "zed").await;
        assert_ne!(zed_fleet, zed_local);

        let first = a.import_sqlite(&db, false, T0 + 40).await.expect("import");
        assert_eq!(first.imported, ["quinn"]);
        assert_eq!(first.conflicts, ["zed"]);
        assert_eq!(first.skipped_pending, ["sam"]);
        assert_eq!(first.suspended, 1);
        let again = a
            .import_sqlite(&db, false, T0 + 41)
            .await
            .expect("import again");
        assert_eq!(again.imported, Vec::<String>::new());
        assert_eq!(again.unchanged, ["quinn"]);
        assert_eq!(again.conflicts, ["zed"]);
        assert_eq!(again.suspended, 0);

        // The replay guard and the used recovery code came along; the secret works.
        let t = T0 + 30;
        assert_eq!(
            verdict(&b, "quinn", &otp::totp_at(&quinn, t), t + 5).await,
            Verdict::Rejected(Rejection::Replayed)
        );
        assert_eq!(
            verdict(&b, "quinn", &quinn_codes[0], t + 6).await,
            Verdict::Rejected(Rejection::RecoveryCodeUsed)
        );
        assert_eq!(
            verdict(&b, "quinn", &quinn_codes[1], t + 7).await,
            Verdict::Accepted(Method::RecoveryCode)
        );
        let t2 = T0 + 60;
        assert_eq!(
            verdict(&b, "quinn", &otp::totp_at(&quinn, t2), t2).await,
            Verdict::Accepted(Method::Otp)
        );
        assert!(matches!(
            b.login_state("rita", t2, LIMITS).await.expect("state"),
            LoginState::Suspended
        ));
        // The fleet's zed was left alone; with force the host's zed replaces it.
        assert_eq!(
            verdict(&a, "zed", &otp::totp_at(&zed_fleet, t2), t2).await,
            Verdict::Accepted(Method::Otp)
        );
        let forced = a.import_sqlite(&db, true, T0 + 70).await.expect("force");
        assert_eq!(forced.replaced, ["zed"]);
        assert_eq!(forced.unchanged, ["quinn"]);
        let t3 = T0 + 90;
        assert_eq!(
            verdict(&b, "zed", &otp::totp_at(&zed_local, t3), t3).await,
            Verdict::Accepted(Method::Otp)
        );
        // And the sqlite file was only read.
        let dump = pg.dump();
        assert!(!dump.contains(&quinn) && !dump.contains(&zed_local));
    });
}

#[test]
fn the_blocking_adapter_serves_threads_outside_the_runtime() {
    use toopherd::fleet::blocking::PgBlocking;
    let pg = TempPostgres::start();
    let rt = runtime();
    let (a, b) = rt.block_on(two_hosts(&pg));
    let secret = rt.block_on(enrolled(&a, "uma"));
    let (a, b) = (
        Arc::new(PgBlocking::new(Arc::new(a), rt.handle().clone())),
        Arc::new(PgBlocking::new(Arc::new(b), rt.handle().clone())),
    );
    let t = T0 + 30;
    let code = otp::totp_at(&secret, t);
    // As the daemon calls it: from blocking threads, both hosts at once.
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|host| {
            let code = code.clone();
            std::thread::spawn(move || host.check("uma", &code, t, LIMITS, &Attempt::default()))
        })
        .collect();
    let verdicts: Vec<Verdict> = threads
        .into_iter()
        .map(|h| {
            h.join()
                .expect("thread")
                .expect("check")
                .expect("enrolled")
                .verdict
        })
        .collect();
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| **v == Verdict::Accepted(Method::Otp))
            .count(),
        1,
        "{verdicts:?}"
    );
    assert!(a.answered() >= 1 && b.answered() >= 1);
    let st = a.status("uma", "local", t, LIMITS).expect("status");
    assert_eq!(st.status.last_success_at, Some(t));
}

#[test]
fn an_error_mid_transaction_denies_and_loses_nothing() {
    let pg = TempPostgres::start();
    let db = toopher_tests::postgres::DATABASE;
    runtime().block_on(async {
        let (a, b) = two_hosts(&pg).await;
        let secret = enrolled(&a, "vera").await;
        // The database fails the last write of a verification (recording the success),
        // after the replay guard moved: the whole transaction must go.
        pg.psql_admin_in(
            db,
            "CREATE FUNCTION fail_vera() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.user_name = 'vera' THEN RAISE EXCEPTION 'disk on fire'; END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER fail_vera BEFORE INSERT OR UPDATE ON activity
             FOR EACH ROW EXECUTE FUNCTION fail_vera();",
        );
        let t = T0 + 30;
        let code = otp::totp_at(&secret, t);
        match a.verify("vera", &code, t, LIMITS).await {
            Err(e @ PgError::Db(_)) => {
                assert!(!e.is_unreachable(), "{e}");
                assert!(e.to_string().contains("disk on fire"), "{e}");
            }
            other => panic!("a failing write gave {other:?}"),
        }
        // The connection that saw the error is clean for the next request.
        enrolled(&a, "walt").await;
        pg.psql_admin_in(db, "DROP TRIGGER fail_vera ON activity");
        // Nothing of the failed verification stayed: the code was not used up.
        assert_eq!(
            verdict(&b, "vera", &code, t).await,
            Verdict::Accepted(Method::Otp)
        );
    });
}

#[test]
fn store_commands_check_and_say_what_is_wrong() {
    use std::os::unix::fs::PermissionsExt;
    use toopherd::fleet::commands;
    use toopherd::fleet::settings::{StoreConfig, StoreKind};
    let mut pg = TempPostgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("fleet.toml");
    let write = |extra: &str| {
        let text = commands::keygen(1).expect("keygen");
        std::fs::write(&creds, format!("{}{extra}", text.as_str())).expect("write");
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    write(&format!("password = \"{}\"\n", pg.password));
    let store = StoreConfig {
        kind: StoreKind::Postgres,
        url: Some(pg.url_tcp()),
        ca_file: pg.ca_file.clone().map(toopherd::config::AbsPath),
        credentials_file: Some(creds.clone()),
        ..StoreConfig::default()
    };
    // An empty database: toopherd has not created its schema yet.
    let e = commands::check(&store).expect_err("no schema yet");
    assert!(e.0.contains("no toopherd schema yet"), "{e}");
    // Creating it (as toopherd's start does) through an import of nothing.
    let empty = dir.path().join("empty.sqlite3");
    drop(toopherd::store::Store::open(&empty).expect("sqlite"));
    let report = commands::import(&store, &empty, false).expect("import");
    assert!(commands::describe_import(&report).contains("suspensions added: 0"));
    let ok = commands::check(&store).expect("check");
    assert!(ok.contains("fleet key matches"), "{ok}");
    // Plain TCP, even to loopback: refused before connecting.
    let plain = StoreConfig {
        url: Some(pg.url_plain_tcp()),
        ..store.clone()
    };
    let e = commands::check(&plain).expect_err("plain TCP");
    assert!(e.0.contains("unix socket"), "{e}");
    // The unix socket, in a directory every user can write: refused, and it says why.
    let socket = StoreConfig {
        url: Some(pg.url_socket()),
        ca_file: None,
        ..store.clone()
    };
    commands::check(&socket).expect("the socket in the cluster's own directory");
    std::fs::set_permissions(&pg.socket_dir, std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    let e = commands::check(&socket).expect_err("world-writable socket directory");
    std::fs::set_permissions(&pg.socket_dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    assert!(e.0.contains("writable by every user"), "{e}");
    // Another key under the same id.
    write(&format!("password = \"{}\"\n", pg.password));
    let e = commands::check(&store).expect_err("wrong key");
    assert!(e.0.contains("is not the key the fleet sealed with"), "{e}");
    // A wrong password.
    write("password = \"wrong\"\n");
    let e = commands::check(&store).expect_err("wrong password");
    assert!(e.0.contains("refused toopherd's role"), "{e}");
    // A credentials file others can read.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = commands::check(&store).expect_err("loose file");
    assert!(e.0.contains("chmod 600"), "{e}");
    write(&format!("password = \"{}\"\n", pg.password));
    // The database down.
    pg.stop();
    let e = commands::check(&store).expect_err("down");
    assert!(e.0.contains("cannot be reached"), "{e}");
}

#[test]
fn connections_the_server_dropped_are_replaced_without_a_failed_login() {
    let pg = TempPostgres::start();
    runtime().block_on(async {
        let (a, _) = two_hosts(&pg).await;
        let secret = enrolled(&a, "xena").await;
        for round in 1..=10u64 {
            // As a restart or failover does: every connection of toopherd's role is cut
            // while idle in the pool (at times long enough for the idle check).
            if round % 2 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2100));
            }
            pg.psql_admin(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE usename = 'toopherd'",
            );
            let now = T0 + round * 30;
            assert_eq!(
                verdict(&a, "xena", &otp::totp_at(&secret, now), now).await,
                Verdict::Accepted(Method::Otp),
                "round {round}"
            );
        }
    });
}

#[test]
fn every_connection_in_use_is_busy_never_unreachable() {
    let pg = TempPostgres::start();
    let mut s = settings(&pg, pg.url_tcp(), "host-a");
    s.pool_size = 1;
    s.timeouts = Timeouts {
        connect: Duration::from_secs(1),
        query: Duration::from_secs(8),
    };
    let rt = runtime();
    let store = rt
        .block_on(PgStore::open(&s, keyring(1, 7), T0))
        .expect("open");
    let secret = rt.block_on(enrolled(&store, "yuri"));
    // Recording yuri's success takes 3 s (a slow statement, not a lock wait, which gives
    // up after a second): the one connection is busy for that long.
    pg.psql_admin_in(
        toopher_tests::postgres::DATABASE,
        "CREATE FUNCTION slow_yuri() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.user_name = 'yuri' THEN PERFORM pg_sleep(3); END IF;
         RETURN NEW; END $$;
         CREATE TRIGGER slow_yuri BEFORE INSERT OR UPDATE ON activity
         FOR EACH ROW EXECUTE FUNCTION slow_yuri();",
    );
    let t = T0 + 30;
    let code = otp::totp_at(&secret, t);
    let (first, second) = rt.block_on(async {
        tokio::join!(store.verify("yuri", &code, t, LIMITS), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            store.verify("yuri", &code, t, LIMITS).await
        })
    });
    match second {
        Err(e @ PgError::Busy) => assert!(!e.is_unreachable(), "{e}"),
        other => panic!("a call with no free connection gave {other:?}"),
    }
    assert_eq!(
        first.expect("the first call waits and is answered"),
        Some(Verdict::Accepted(Method::Otp))
    );
}

/// Anyone who can connect can take a user's advisory lock. A verification that waits on
/// it gives up with the server's lock timeout (55P03), an answer that denies: never the
/// client's timeout, which would count as "unreachable" and let `failmode = safe` decide.
#[test]
fn a_users_lock_held_by_someone_else_denies_and_is_not_unreachable() {
    let pg = TempPostgres::start();
    let rt = runtime();
    let (a, _b) = rt.block_on(two_hosts(&pg));
    let secret = rt.block_on(enrolled(&a, "ivan"));
    std::thread::scope(|scope| {
        scope.spawn(|| pg.hold_user_lock("ivan", 6));
        std::thread::sleep(Duration::from_millis(700));
        let t = T0 + 30;
        let code = otp::totp_at(&secret, t);
        let started = Instant::now();
        match rt.block_on(a.verify("ivan", &code, t, LIMITS)) {
            Err(e) => {
                assert!(!e.is_unreachable(), "{e}");
                assert!(e.to_string().contains("55P03"), "{e}");
            }
            Ok(v) => panic!("a verification while the lock was held gave {v:?}"),
        }
        // Within the lock timeout (1 s for a 3 s query timeout), not the query timeout.
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
    });
    // Once the lock is let go, the same code is still good: nothing was used up.
    let t = T0 + 30;
    assert_eq!(
        rt.block_on(verdict(&a, "ivan", &otp::totp_at(&secret, t), t)),
        Verdict::Accepted(Method::Otp)
    );
}

/// A value the client cannot convert (here a column whose type changed under toopherd)
/// is an answer the client refused, which denies; only a lost connection is unreachable.
#[test]
fn a_value_the_client_cannot_read_denies_and_is_not_unreachable() {
    let pg = TempPostgres::start();
    let rt = runtime();
    let (a, _b) = rt.block_on(two_hosts(&pg));
    rt.block_on(enrolled(&a, "jack"));
    drop(a);
    pg.psql_admin_in(
        toopher_tests::postgres::DATABASE,
        "ALTER TABLE failures ALTER COLUMN at TYPE numeric",
    );
    // New connections, so no statement prepared before the change is in the way.
    let (c, _d) = rt.block_on(two_hosts(&pg));
    for result in [
        rt.block_on(c.login_state("jack", T0 + 30, LIMITS))
            .map(|_| ()),
        rt.block_on(c.verify("jack", "123456", T0 + 30, LIMITS))
            .map(|_| ()),
    ] {
        match result {
            Err(e) => assert!(!e.is_unreachable(), "{e}"),
            Ok(()) => panic!("a column of the wrong type was read"),
        }
    }
}
