//! Fleet mode end to end: two toopherd ("hosts" A and B: separate sockets, configs and
//! logs) on one temporary PostgreSQL cluster, logins through the real libpam and the
//! built module, enrolments through toopherctl, codes from oathtool. Needs root.

use std::os::unix::fs::PermissionsExt;
use toopher_tests::daemon::Toopherd;
use toopher_tests::otp;
use toopher_tests::pam::{self, Stack};
use toopher_tests::postgres::TempPostgres;

struct Fleet {
    pg: TempPostgres,
    a: Toopherd,
    b: Toopherd,
    _credentials: tempfile::TempDir,
}

/// The fleet credentials file every host shares (0600, root's).
fn credentials(pg: &TempPostgres) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.toml");
    let text = toopherd::fleet::credentials::keygen(1).expect("keygen");
    std::fs::write(
        &path,
        format!("{}password = \"{}\"\n", text.as_str(), pg.password),
    )
    .expect("write credentials");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, path)
}

fn store_section(
    pg: &TempPostgres,
    url: &str,
    credentials: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        "{extra}\n[store]\nkind = \"postgres\"\nurl = \"{url}\"\ncredentials_file = \"{}\"\n\
         ca_file = \"{}\"\nconnect_timeout = 2\nquery_timeout = 3\n",
        credentials.display(),
        pg.ca_file.as_ref().expect("test CA").display()
    )
}

impl Fleet {
    fn start(extra: &str) -> Fleet {
        toopher_tests::system::require_root();
        let pg = TempPostgres::start();
        let (dir, creds) = credentials(&pg);
        let a = Toopherd::start_with(&store_section(&pg, &pg.url_socket(), &creds, extra));
        let b = Toopherd::start_with(&store_section(&pg, &pg.url_tcp(), &creds, extra));
        Fleet {
            pg,
            a,
            b,
            _credentials: dir,
        }
    }
}

fn login(d: &Toopherd, user: &str, code: &str) -> pam::Transcript {
    let stack = Stack::toopher(&d.socket, "prompts=1");
    pam::login(&stack, user, &[code], None)
}

#[test]
fn enrol_on_a_log_in_on_b_and_a_code_counts_once() {
    let f = Fleet::start("");
    let mut u = f.a.enroll("daemon");
    let code = u.next_code();
    let t = login(&f.b, "daemon", &code);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", f.b.log());
    let again = login(&f.a, "daemon", &code);
    assert_ne!(
        again.auth,
        pam::PAM_SUCCESS,
        "a code accepted on B was taken on A"
    );
    assert!(f.a.log().contains("reason=replayed_code"), "{}", f.a.log());
    let st = f.a.ctl(&["status", "daemon", "--json"]);
    assert!(st.status.success());
}

#[test]
fn failures_on_a_and_b_lock_the_user_on_both() {
    let f = Fleet::start("[rate_limit]\nmax_failures = 4\nwindow = 300\n");
    let mut u = f.a.enroll("bin");
    let wrong = otp::wrong_code(&u.secret);
    for d in [&f.a, &f.b, &f.a, &f.b] {
        assert_ne!(login(d, "bin", &wrong).auth, pam::PAM_SUCCESS);
    }
    let right = u.next_code();
    for d in [&f.a, &f.b] {
        let t = login(d, "bin", &right);
        assert_ne!(t.auth, pam::PAM_SUCCESS, "a locked user got in: {t:?}");
    }
}

#[test]
fn a_recovery_code_used_on_a_is_refused_on_b() {
    let f = Fleet::start("");
    let u = f.a.enroll("sys");
    let code = &u.recovery_codes[0];
    assert_eq!(login(&f.a, "sys", code).auth, pam::PAM_SUCCESS);
    assert_ne!(login(&f.b, "sys", code).auth, pam::PAM_SUCCESS);
}

#[test]
fn disable_on_a_denies_on_b() {
    let f = Fleet::start("");
    let mut u = f.a.enroll("games");
    assert!(f.a.ctl(&["disable", "games"]).status.success());
    assert_ne!(login(&f.b, "games", &u.next_code()).auth, pam::PAM_SUCCESS);
    assert!(f.b.ctl(&["enable", "games"]).status.success());
    assert_eq!(login(&f.a, "games", &u.next_code()).auth, pam::PAM_SUCCESS);
}

#[test]
fn one_code_raced_on_a_and_b_wins_once_in_100_races() {
    let f = Fleet::start("");
    for round in 0..100 {
        // A fresh enrolment each round: its activation uses the current step, the race
        // the next one.
        let out = f.a.ctl(&["remove", "man"]);
        assert!(out.status.success() || round == 0);
        let mut u = f.a.enroll("man");
        let code = u.next_code();
        let (sa, sb) = (f.a.socket.clone(), f.b.socket.clone());
        let (ca, cb) = (code.clone(), code.clone());
        let ta = std::thread::spawn(move || {
            pam::login(&Stack::toopher(&sa, "prompts=1"), "man", &[&ca], None).auth
        });
        let tb = std::thread::spawn(move || {
            pam::login(&Stack::toopher(&sb, "prompts=1"), "man", &[&cb], None).auth
        });
        let results = [ta.join().expect("A"), tb.join().expect("B")];
        let wins = results.iter().filter(|r| **r == pam::PAM_SUCCESS).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
    }
}

#[test]
fn the_database_stopped_mid_login_then_back_without_restarting_toopherd() {
    for failmode in ["secure", "safe"] {
        let mut f = Fleet::start(&format!("failmode = \"{failmode}\"\n"));
        let mut u = f.a.enroll("lp");
        let code = u.next_code();
        let stack = Stack::toopher(&f.b.socket, "prompts=1");
        let started = std::time::Instant::now();
        let t = {
            let pg = &mut f.pg;
            // The login has begun (B looked the user up); the database goes away before
            // the code arrives.
            let mut respond = |_: i32, _: &str| {
                pg.stop();
                Some(code.clone())
            };
            pam::login_with(&stack, "lp", None, &mut respond)
        };
        assert_eq!(t.prompts(), 1, "{t:?}");
        // The database answered when the login began: a code that cannot be checked now
        // denies under both failmodes (failmode never lets a code through unchecked).
        assert_ne!(
            t.auth,
            pam::PAM_SUCCESS,
            "failmode {failmode}: {t:?}\n{}",
            f.b.log()
        );
        // Bounded: connect_timeout 2 s + query_timeout 3 s, with room for a slow machine.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(12),
            "{:?}",
            started.elapsed()
        );
        // A login that begins while the database is down is the service not reached:
        // `failmode` decides, and fast. Secure denies; safe lets the login in without its
        // second factor, and says so in the log.
        let started = std::time::Instant::now();
        let t = login(&f.b, "lp", &code);
        if failmode == "secure" {
            assert_eq!(
                t.auth,
                pam::PAM_AUTHINFO_UNAVAIL,
                "failmode {failmode}: {t:?}\n{}",
                f.b.log()
            );
            assert!(!f.b.log().contains("NO_SECOND_FACTOR"), "{}", f.b.log());
            assert!(
                f.b.log()
                    .contains("reason=backend_unreachable failmode=secure"),
                "{}",
                f.b.log()
            );
        } else {
            assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", f.b.log());
            assert_eq!(t.prompts(), 0, "{t:?}");
            assert!(
                f.b.log()
                    .contains("reason=backend_unreachable failmode=safe NO_SECOND_FACTOR"),
                "{}",
                f.b.log()
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(12),
            "{:?}",
            started.elapsed()
        );
        f.pg.restart();
        // The same toopherd processes, the same code: it was not used up while the
        // database was down, and it logs in now on either host.
        assert_eq!(
            login(&f.a, "lp", &code).auth,
            pam::PAM_SUCCESS,
            "{}",
            f.a.log()
        );
    }
}

/// Anyone who can connect to the database can hold a user's advisory lock. A login that
/// waits on it is denied with a wrong code under `failmode = safe` (and with a right one):
/// the database answered, so this is never "the service could not be reached".
#[test]
fn a_users_lock_held_by_someone_else_denies_a_wrong_code_under_failmode_safe() {
    let f = Fleet::start("failmode = \"safe\"\n");
    let mut u = f.a.enroll("news");
    let wrong = {
        let right = u.next_code();
        let n: u32 = right.parse().expect("digits");
        format!("{:06}", (n + 1) % 1_000_000)
    };
    std::thread::scope(|scope| {
        scope.spawn(|| f.pg.hold_user_lock("news", 8));
        std::thread::sleep(std::time::Duration::from_millis(700));
        let t = login(&f.b, "news", &wrong);
        assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", f.b.log());
    });
    assert!(!f.b.log().contains("failmode=safe"), "{}", f.b.log());
    assert!(f.b.log().contains("55P03"), "{}", f.b.log());
}

/// A value toopherd cannot read (a column's type changed) denies under `failmode = safe`:
/// the client refusing an answer is not the database being unreachable.
#[test]
fn a_column_toopherd_cannot_read_denies_under_failmode_safe() {
    let f = Fleet::start("failmode = \"safe\"\n");
    let mut u = f.a.enroll("games");
    f.pg.psql_admin_in(
        toopher_tests::postgres::DATABASE,
        "ALTER TABLE failures ALTER COLUMN at TYPE numeric",
    );
    // A host started after the change: no statement it prepared before is in the way,
    // so the value reaches the client, which cannot read it.
    let creds = f._credentials.path().join("fleet.toml");
    let c = Toopherd::start_with(&store_section(
        &f.pg,
        &f.pg.url_socket(),
        &creds,
        "failmode = \"safe\"\n",
    ));
    for d in [&f.a, &f.b, &c] {
        let t = login(d, "games", &u.next_code());
        assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
        assert!(!d.log().contains("failmode=safe"), "{}", d.log());
    }
}

#[test]
fn a_dump_has_no_secret_in_clear() {
    let f = Fleet::start("");
    let u = f.a.enroll("mail");
    let dump = f.pg.dump();
    assert!(dump.contains("COPY public.accounts"));
    assert!(!dump.contains(&u.secret));
    for c in &u.recovery_codes {
        assert!(!dump.contains(c.as_str()));
    }
}

#[test]
fn status_on_either_host_names_the_host_of_the_last_success() {
    let f = Fleet::start("");
    let mut u = f.a.enroll("news");
    assert_eq!(login(&f.b, "news", &u.next_code()).auth, pam::PAM_SUCCESS);
    let out = f.a.ctl(&["status", "news"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let host = toopherd::fleet::settings::host_name();
    assert!(
        text.lines()
            .any(|l| l.starts_with("last success:") && l.ends_with(&format!(" on {host}"))),
        "{text}"
    );
}

#[test]
fn a_secret_moved_onto_another_user_denies_even_with_failmode_safe() {
    let f = Fleet::start("failmode = \"safe\"\n");
    let donor = f.a.enroll("uucp");
    let mut victim = f.a.enroll("proxy");
    f.pg.psql_admin_in(
        toopher_tests::postgres::DATABASE,
        "UPDATE accounts SET secret = (SELECT secret FROM accounts WHERE user_name = 'uucp')
         WHERE user_name = 'proxy'",
    );
    // Neither the donor's codes nor the victim's own open the door: the secret does not
    // decrypt for this user, which is a store failure that denies, not "unreachable".
    let donor_code = otp::totp_step(&donor.secret, otp::current_step());
    for code in [donor_code, victim.next_code()] {
        let t = login(&f.b, "proxy", &code);
        assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", f.b.log());
    }
    assert!(!f.b.log().contains("NO_SECOND_FACTOR"), "{}", f.b.log());
    assert!(f.b.log().contains("does not decrypt"), "{}", f.b.log());
}

#[test]
fn a_hosts_sqlite_store_imported_twice_with_toopherctl() {
    let f = Fleet::start("");
    // A host on its own store first.
    let mut alone = Toopherd::start();
    let mut u = alone.enroll("irc");
    let db = alone.database();
    alone.stop();
    let import = || {
        let out = f.a.ctl(&[
            "store",
            "import",
            "--from-sqlite",
            db.to_str().expect("utf8"),
            "--config",
            f.a.config.to_str().expect("utf8"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(import().contains("imported: irc"));
    assert!(import().contains("unchanged (already in the fleet): irc"));
    // The replay state came along: the next code works on B, the activation's does not.
    let used = otp::totp_step(&u.secret, u.last_step);
    assert_ne!(login(&f.b, "irc", &used).auth, pam::PAM_SUCCESS);
    assert_eq!(login(&f.b, "irc", &u.next_code()).auth, pam::PAM_SUCCESS);
}

#[test]
fn keygen_and_check_config() {
    let f = Fleet::start("");
    let out = f.a.ctl(&["store", "keygen", "--key-id", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("key_id = 3"),
        "{text}"
    );
    let ok = toopher_tests::daemon::run_once(&f.a.config, &["--check-config"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("fleet key matches"));
}
