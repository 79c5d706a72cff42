//! Needs root: the state directory is on a small tmpfs this suite mounts (in its own temp
//! dir, unmounted on drop) and fills.
//!
//! A full disk. A login that would have to record the use of a code is denied (a store
//! that cannot record a use must not grant; this is not a failmode case), the reason is
//! logged once however many logins fail, nothing acknowledged is lost, and toopherd
//! recovers by itself once there is room again.

use toopher_tests::daemon::Toopherd;
use toopher_tests::durable::{SmallFs, integrity_check};
use toopher_tests::pam::{self, Stack};
use toopher_tests::system;

/// `toopherctl recovery-codes USER --regenerate`: the new codes.
fn regenerate(d: &Toopherd, user: &str) -> Vec<String> {
    let out = d.ctl(&["recovery-codes", user, "--regenerate"]);
    assert!(
        out.status.success(),
        "regenerate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{}", String::from_utf8_lossy(&out.stdout));
    codes
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_full_disk_denies_logs_the_reason_once_and_recovers_by_itself() {
    system::require_root();
    // Declared first, dropped last: toopherd stops before the file system is unmounted.
    let fs = SmallFs::mount(2048);
    let mut d = Toopherd::start_in(Some(&fs.path.join("state")), "");
    let mut u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let login = |code: &str| pam::login(&stack, "daemon", &[code], None);

    // Acknowledged before the disk fills: a used code and a regeneration.
    let used = u.recovery_codes[0].clone();
    assert_eq!(login(&used).auth, pam::PAM_SUCCESS, "{}", d.log());
    let codes = regenerate(&d, "daemon");

    let filler = fs.fill("filler");
    let pid = d.pid();
    // Right codes (TOTP and recovery) and a wrong one: each is denied, none granted.
    let totp = u.next_code();
    let attempts = [
        totp.as_str(),
        &codes[0],
        &codes[1],
        "123456",
        &codes[2],
        &codes[0],
    ];
    for code in attempts {
        let t = login(code);
        assert_eq!(
            t.auth,
            pam::PAM_AUTHINFO_UNAVAIL,
            "a login on a full disk: {t:?}\n{}",
            d.log()
        );
    }
    let log = d.log();
    assert_eq!(
        count(&log, "store failing"),
        1,
        "the reason is logged once:\n{log}"
    );
    assert_eq!(count(&log, "database or disk is full"), 1, "{log}");
    // Each decision is still logged.
    assert_eq!(
        count(&log, "outcome=error reason=internal"),
        attempts.len(),
        "{log}"
    );

    // Room again: the next login works, in the same toopherd, and the recovery is logged.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(login(&codes[0]).auth, pam::PAM_SUCCESS, "{}", d.log());
    assert_eq!(d.pid(), pid);
    assert!(d.is_running());
    let log = d.log();
    assert_eq!(count(&log, "store works again"), 1, "{log}");
    assert_eq!(count(&log, "store failing"), 1, "{log}");

    // Nothing acknowledged was lost, also after a kill and a restart.
    for restarted in [false, true] {
        if restarted {
            d.kill();
            d.spawn();
        }
        for old in [&used, &u.recovery_codes[1], &codes[0]] {
            assert_ne!(
                login(old).auth,
                pam::PAM_SUCCESS,
                "a used or replaced code worked (restarted: {restarted})"
            );
        }
        let fresh = if restarted { &codes[4] } else { &codes[3] };
        assert_eq!(login(fresh).auth, pam::PAM_SUCCESS, "{}", d.log());
        assert_eq!(integrity_check(&d.database()), "ok");
    }
    assert!(d.stop(), "{}", d.log());
    eprintln!("{}", d.log());
}

#[test]
fn restarted_on_a_full_disk_toopherd_comes_up_denies_and_recovers() {
    system::require_root();
    let fs = SmallFs::mount(2048);
    let mut d = Toopherd::start_in(Some(&fs.path.join("state")), "");
    let u = d.enroll("daemon");
    let stack = Stack::toopher(&d.socket, "prompts=1");
    let login = |code: &str| pam::login(&stack, "daemon", &[code], None);
    assert_eq!(login(&u.recovery_codes[0]).auth, pam::PAM_SUCCESS);

    // Killed with changes in the WAL, restarted with no room at all.
    let filler = fs.fill("filler");
    d.kill();
    d.spawn();
    assert_eq!(login(&u.recovery_codes[1]).auth, pam::PAM_AUTHINFO_UNAVAIL);
    assert_ne!(login(&u.recovery_codes[0]).auth, pam::PAM_SUCCESS);

    std::fs::remove_file(&filler).unwrap();
    assert_ne!(login(&u.recovery_codes[0]).auth, pam::PAM_SUCCESS);
    assert_eq!(
        login(&u.recovery_codes[1]).auth,
        pam::PAM_SUCCESS,
        "{}",
        d.log()
    );
    assert_eq!(integrity_check(&d.database()), "ok");
}
