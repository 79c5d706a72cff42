//! The policy (issue 12) end to end: the built module through the real libpam (and real
//! sshd and sudo where the case needs them) against a real toopherd with the local
//! backend. Every decision is checked twice: by what the login did and by toopherd's log
//! line naming the rule, and `toopherctl policy explain` must name the same outcome and
//! rule. Needs root (accounts, groups, audit sessions).

use std::process::Command;
use toopher_tests::daemon::{Enrolled, Toopherd};
use toopher_tests::otp;
use toopher_tests::pam::{self, Stack};
use toopher_tests::system::{PamDir, SshAuth, Sshd, SudoersDropIn, TestUser, require_root};

/// A recovery code of `e`: a second factor without waiting for the next TOTP step.
fn spare(e: &mut Enrolled) -> String {
    e.recovery_codes.pop().expect("a recovery code left")
}

/// A Unix group with the given supplementary members, removed on drop.
struct TestGroup {
    name: String,
}

impl TestGroup {
    fn create(tag: &str, members: &[&str]) -> TestGroup {
        require_root();
        let name = format!("tpg{tag}{}", std::process::id() % 100_000);
        run(Command::new("groupadd").arg(&name));
        let g = TestGroup { name };
        for m in members {
            run(Command::new("usermod").args(["-aG", &g.name, m]));
        }
        g
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The module alone in service `service` (no password: the decisions are the point).
fn stack(d: &Toopherd, service: &str) -> Stack {
    Stack::new(
        service,
        &format!(
            "auth     required {m} socket={s} prompts=1\naccount  required pam_permit.so\n",
            m = toopher_tests::module_path().display(),
            s = d.socket.display()
        ),
    )
}

/// `outcome=X rule=Y`: the two fields of a decision line that name what was decided
/// and by which rule, wherever they stand in it.
fn key(fields: &str) -> String {
    let find = |k: &str| {
        fields
            .split_whitespace()
            .find(|f| f.starts_with(k))
            .unwrap_or("")
            .to_owned()
    };
    format!("{} {}", find("outcome="), find("rule="))
}

/// The policy fields of toopherd's last decision line about `user`.
fn last_decision(d: &Toopherd, user: &str) -> String {
    let log = d.log();
    let line = log
        .lines()
        .rfind(|l| {
            (l.contains(&format!("auth user={user} "))
                || l.contains(&format!("policy user={user} ")))
                && l.contains(" rule=")
        })
        .unwrap_or_else(|| panic!("no decision about {user} in the log:\n{log}"));
    let at = line.find("outcome=").expect("outcome= in a decision line");
    line[at..].to_owned()
}

/// `toopherctl policy explain`, as root.
fn explain(d: &Toopherd, user: &str, rhost: Option<&str>, service: &str) -> String {
    let mut args = vec!["policy", "explain", user, "--service", service];
    if let Some(r) = rhost {
        args.extend(["--rhost", r]);
    }
    let out = d.ctl(&args);
    assert!(
        out.status.success(),
        "policy explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last logged decision about `user` is `expected` (`outcome=X rule=Y`), and
/// `policy explain` for the same login says the same.
fn assert_decided(d: &Toopherd, user: &str, rhost: Option<&str>, service: &str, expected: &str) {
    let logged = last_decision(d, user);
    assert_eq!(key(&logged), expected, "logged: {logged}\n{}", d.log());
    let explained = explain(d, user, rhost, service);
    let decision = explained
        .lines()
        .find_map(|l| l.strip_prefix("decision: "))
        .unwrap_or_else(|| panic!("no decision line in:\n{explained}"));
    assert_eq!(key(decision), expected, "explain disagrees:\n{explained}");
}

fn config(policy: &str) -> String {
    format!("availability = \"available\"\n[policy]\n{policy}")
}

#[test]
fn each_group_rule_with_primary_and_supplementary_membership_and_the_conflict() {
    let req_primary = TestUser::create("ra");
    let req_supp = TestUser::create("rb");
    let ex_primary = TestUser::create("ea");
    let ex_supp = TestUser::create("eb");
    let avail = TestUser::create("av");
    let both = TestUser::create("bo");
    let nobody = TestUser::create("no");
    let required = TestGroup::create("r", &[&req_supp.name, &both.name]);
    let exempt = TestGroup::create("e", &[&ex_supp.name, &both.name]);
    let available = TestGroup::create("a", &[&avail.name]);
    // Primary membership: Debian gives each user a group of its own name.
    let d = Toopherd::start_with(&config(&format!(
        "required_groups = [\"{}\", \"{}\"]\nexempt_groups = [\"{}\", \"{}\"]\n\
         available_groups = [\"{}\"]\n",
        required.name, req_primary.name, exempt.name, ex_primary.name, available.name
    )));
    let s = stack(&d, "toopher-policy");
    let svc = "toopher-policy";

    // Required, not enrolled: denied (the default "available" does not apply).
    for u in [&req_primary, &req_supp] {
        let t = pam::login(&s, &u.name, &[], None);
        assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{}: {t:?}", u.name);
        assert_decided(&d, &u.name, None, svc, "outcome=denied rule=required_group");
    }
    // Required and enrolled: the code is asked for and works.
    let mut e = d.enroll(&req_supp.name);
    let code = e.next_code();
    let t = pam::login(&s, &req_supp.name, &[&code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert_eq!(t.prompts(), 1);
    assert_decided(
        &d,
        &req_supp.name,
        None,
        svc,
        "outcome=challenge rule=required_group",
    );

    // Exempt: no prompt, even when enrolled.
    d.enroll(&ex_supp.name);
    for u in [&ex_primary, &ex_supp] {
        let t = pam::login(&s, &u.name, &[], None);
        assert_eq!(t.auth, pam::PAM_SUCCESS, "{}: {t:?}\n{}", u.name, d.log());
        assert_eq!(t.prompts(), 0);
        assert_decided(&d, &u.name, None, svc, "outcome=allowed rule=exempt_group");
    }

    // Available: passes without a factor, must use one it has.
    let t = pam::login(&s, &avail.name, &[], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &avail.name,
        None,
        svc,
        "outcome=allowed rule=available_group",
    );
    let e = d.enroll(&avail.name);
    let t = pam::login(&s, &avail.name, &[&otp::wrong_code(&e.secret)], None);
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &avail.name,
        None,
        svc,
        "outcome=challenge rule=available_group",
    );

    // In a required and an exempt group: required wins.
    let t = pam::login(&s, &both.name, &[], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}");
    assert_decided(
        &d,
        &both.name,
        None,
        svc,
        "outcome=denied rule=required_group",
    );

    // In none: the default.
    let t = pam::login(&s, &nobody.name, &[], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &nobody.name,
        None,
        svc,
        "outcome=allowed rule=availability",
    );
}

#[test]
fn unknown_groups_are_reported_by_check_config_and_at_start() {
    let d = Toopherd::start_with(&config("exempt_groups = [\"no-such-group-tp\"]\n"));
    let out = toopher_tests::daemon::run_once(&d.config, &["--check-config"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "a warning, not an error: {text}");
    assert!(
        text.contains("group no-such-group-tp is not known to this system"),
        "{text}"
    );
    assert!(
        d.log()
            .contains("group no-such-group-tp is not known to this system"),
        "{}",
        d.log()
    );
}

#[test]
fn trusted_networks_inside_outside_ipv6_mapped_and_host_names() {
    let u = TestUser::create("tn");
    let d = Toopherd::start_with(
        "[policy]\ntrusted_networks = [\"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.0/8\"]\n",
    );
    let mut e = d.enroll(&u.name);
    let s = stack(&d, "toopher-policy");
    let svc = "toopher-policy";
    for inside in ["10.1.2.3", "2001:db8::5", "::ffff:10.1.2.3"] {
        let t = pam::login(&s, &u.name, &[], Some(inside));
        assert_eq!(t.auth, pam::PAM_SUCCESS, "{inside}: {t:?}\n{}", d.log());
        assert_eq!(t.prompts(), 0, "{inside}");
        assert_decided(
            &d,
            &u.name,
            Some(inside),
            svc,
            "outcome=allowed rule=trusted_network",
        );
    }
    assert!(
        d.log().contains(&format!(
            "auth user={} service={svc} rhost=10.1.2.3 tty=- outcome=allowed rule=trusted_network network=10.0.0.0/8",
            u.name
        )),
        "{}",
        d.log()
    );
    // Outside, a host name that resolves into a trusted network, no rhost: a code.
    for outside in [
        Some("11.1.2.3"),
        Some("2001:db9::5"),
        Some("localhost"),
        None,
    ] {
        let code = spare(&mut e);
        let t = pam::login(&s, &u.name, &[&code], outside);
        assert_eq!(t.auth, pam::PAM_SUCCESS, "{outside:?}: {t:?}\n{}", d.log());
        assert_eq!(t.prompts(), 1, "{outside:?} must ask for a code");
        assert_decided(
            &d,
            &u.name,
            outside,
            svc,
            "outcome=challenge rule=availability",
        );
    }
}

#[test]
fn per_service_overrides() {
    let u = TestUser::create("ps");
    let exempt = TestGroup::create("x", &[&u.name]);
    let d = Toopherd::start_with(&format!(
        "[policy]\nexempt_groups = [\"{}\"]\ntrusted_networks = [\"10.0.0.0/8\"]\n\
         [policy.services.tp-sudo]\nrequired = true\n\
         [policy.services.tp-console]\nrequired = false\n\
         [policy.services.tp-ssh]\ntrusted_networks = []\n",
        exempt.name
    ));
    let mut e = d.enroll(&u.name);
    // The group exempts u everywhere but in tp-sudo.
    let t = pam::login(&stack(&d, "tp-console"), &u.name, &[], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &u.name,
        None,
        "tp-console",
        "outcome=allowed rule=service_exempt",
    );
    let t = pam::login(&stack(&d, "tp-ssh"), &u.name, &[], Some("192.0.2.1"));
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &u.name,
        Some("192.0.2.1"),
        "tp-ssh",
        "outcome=allowed rule=exempt_group",
    );
    let sudo = stack(&d, "tp-sudo");
    let t = pam::login(
        &sudo,
        &u.name,
        &[&otp::wrong_code(&e.secret)],
        Some("10.1.2.3"),
    );
    assert_eq!(t.auth, pam::PAM_MAXTRIES, "{t:?}");
    assert_decided(
        &d,
        &u.name,
        Some("10.1.2.3"),
        "tp-sudo",
        "outcome=challenge rule=service_required",
    );
    let code = spare(&mut e);
    let t = pam::login(&sudo, &u.name, &[&code], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());

    // Without the group: trusted networks apply, except where a service switches them off.
    drop(exempt);
    let t = pam::login(&stack(&d, "tp-other"), &u.name, &[], Some("10.1.2.3"));
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
    assert_decided(
        &d,
        &u.name,
        Some("10.1.2.3"),
        "tp-other",
        "outcome=allowed rule=trusted_network",
    );
    let code = spare(&mut e);
    let t = pam::login(&stack(&d, "tp-ssh"), &u.name, &[&code], Some("10.1.2.3"));
    assert_eq!((t.auth, t.prompts()), (pam::PAM_SUCCESS, 1), "{t:?}");
    assert_decided(
        &d,
        &u.name,
        Some("10.1.2.3"),
        "tp-ssh",
        "outcome=challenge rule=availability",
    );
}

#[test]
fn grace_same_rhost_other_rhost_expiry_disable_other_user_and_clear() {
    let a = TestUser::create("ga");
    let b = TestUser::create("gb");
    let d = Toopherd::start_with("[policy]\ngrace_period = 4\n");
    let mut ea = d.enroll(&a.name);
    let mut eb = d.enroll(&b.name);
    let s = stack(&d, "toopher-policy");
    let svc = "toopher-policy";
    let here = Some("192.0.2.10");

    let code = spare(&mut ea);
    assert_eq!(
        pam::login(&s, &a.name, &[&code], here).auth,
        pam::PAM_SUCCESS
    );
    // Same user, same rhost: no prompt.
    let t = pam::login(&s, &a.name, &[], here);
    assert_eq!(
        (t.auth, t.prompts()),
        (pam::PAM_SUCCESS, 0),
        "{t:?}\n{}",
        d.log()
    );
    assert_decided(&d, &a.name, here, svc, "outcome=allowed rule=grace_period");
    // Another rhost asks.
    let t = pam::login(&s, &a.name, &[], Some("192.0.2.11"));
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &a.name,
        Some("192.0.2.11"),
        svc,
        "outcome=challenge rule=availability",
    );
    // Another user never passes on a's grace.
    let t = pam::login(&s, &b.name, &[], here);
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &b.name,
        here,
        svc,
        "outcome=challenge rule=availability",
    );
    // After the period: asks.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let t = pam::login(&s, &a.name, &[], here);
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &a.name,
        here,
        svc,
        "outcome=challenge rule=availability",
    );

    // disable ends it (and denies); enable does not bring it back.
    let code = spare(&mut ea);
    assert_eq!(
        pam::login(&s, &a.name, &[&code], here).auth,
        pam::PAM_SUCCESS
    );
    assert!(d.ctl(&["disable", &a.name]).status.success());
    let t = pam::login(&s, &a.name, &[], here);
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(&d, &a.name, here, svc, "outcome=denied rule=suspended");
    assert!(d.ctl(&["enable", &a.name]).status.success());
    let t = pam::login(&s, &a.name, &[], here);
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert_decided(
        &d,
        &a.name,
        here,
        svc,
        "outcome=challenge rule=availability",
    );

    // grace clear ends it at once.
    let code = spare(&mut eb);
    assert_eq!(
        pam::login(&s, &b.name, &[&code], here).auth,
        pam::PAM_SUCCESS
    );
    assert_eq!(pam::login(&s, &b.name, &[], here).auth, pam::PAM_SUCCESS);
    let out = d.ctl(&["grace", "clear", &b.name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = pam::login(&s, &b.name, &[], here);
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    assert!(
        d.log()
            .contains(&format!("admin request=grace_clear user={}", b.name)),
        "{}",
        d.log()
    );

    // remove ends it too: the login meets the policy as a login without a factor.
    let code = spare(&mut ea);
    assert_eq!(
        pam::login(&s, &a.name, &[&code], here).auth,
        pam::PAM_SUCCESS
    );
    assert!(d.ctl(&["remove", &a.name]).status.success());
    let t = pam::login(&s, &a.name, &[], here);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}\n{}", d.log());
    assert_decided(&d, &a.name, here, svc, "outcome=denied rule=availability");

    // A restart forgets every grace.
    let code = spare(&mut eb);
    assert_eq!(
        pam::login(&s, &b.name, &[&code], here).auth,
        pam::PAM_SUCCESS
    );
    let mut d = d;
    assert!(d.stop());
    d.spawn();
    let t = pam::login(&s, &b.name, &[], here);
    assert_ne!(t.auth, pam::PAM_SUCCESS, "{t:?}");
}

/// Runs `pam-script` logins of `user` one after another inside one new audit session (a
/// shell that writes /proc/self/loginuid, as pam_loginuid does); each entry of `logins`
/// is the answers of one login, run as `user` runs sudo (real uid `user`'s, effective uid
/// root). Returns the session id and each login's PAM result.
fn in_new_session(s: &Stack, user: &str, logins: &[&[&str]]) -> (u32, Vec<i32>) {
    let runs: Vec<(&str, &[&str])> = logins.iter().map(|a| (user, *a)).collect();
    in_new_session_run_by(s, user, &runs)
}

/// [`in_new_session`], each login run by the real user named with it (`su USER` typed by
/// someone else inside the session: real uid theirs).
fn in_new_session_run_by(s: &Stack, user: &str, logins: &[(&str, &[&str])]) -> (u32, Vec<i32>) {
    let script = toopher_tests::artifact("pam-script");
    let mut cmd =
        String::from("echo 0 > /proc/self/loginuid && echo session=$(cat /proc/self/sessionid)");
    for (run_by, answers) in logins {
        // setpriv sets only the real uid: pam-script runs like a setuid sudo or su.
        cmd.push_str(&format!(
            " && setpriv --ruid=\"$(id -u '{run_by}')\" '{}' --confdir '{}' --service '{}' --user '{user}'",
            script.display(),
            s.dir.path().display(),
            s.service
        ));
        for a in *answers {
            cmd.push_str(&format!(" --answer '{a}'"));
        }
    }
    let out = Command::new("sh").args(["-c", &cmd]).output().expect("sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = text
        .lines()
        .find_map(|l| l.strip_prefix("session="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no session id: {text}"));
    assert_ne!(
        session,
        u32::MAX,
        "writing loginuid must start an audit session"
    );
    let results = text
        .lines()
        .filter_map(|l| l.strip_prefix("auth="))
        .map(|v| v.parse().expect("auth=N"))
        .collect();
    (session, results)
}

#[test]
fn grace_by_audit_session_for_logins_without_rhost() {
    let u = TestUser::create("gs");
    let other = TestUser::create("go");
    let d = Toopherd::start_with("[policy]\ngrace_period = 60\n");
    let mut e = d.enroll(&u.name);
    d.enroll(&other.name);
    let s = stack(&d, "toopher-policy");
    let code = e.next_code();
    // The same session: a code once, then no prompt.
    let (session, results) = in_new_session(&s, &u.name, &[&[&code], &[]]);
    assert_eq!(results, [pam::PAM_SUCCESS, pam::PAM_SUCCESS], "{}", d.log());
    assert_eq!(
        key(&last_decision(&d, &u.name)),
        "outcome=allowed rule=grace_period"
    );
    let out = d.ctl(&[
        "policy",
        "explain",
        &u.name,
        "--service",
        "toopher-policy",
        "--session",
        &session.to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("decision: outcome=allowed rule=grace_period"),
        "{text}"
    );
    // A different session asks; so does another user in a session of its own.
    let (_, results) = in_new_session(&s, &u.name, &[&[]]);
    assert_ne!(results, [pam::PAM_SUCCESS], "{}", d.log());
    let (_, results) = in_new_session(&s, &other.name, &[&[]]);
    assert_ne!(results, [pam::PAM_SUCCESS], "{}", d.log());
    // Inside u's session, `su u` typed by the other user asks, though u's own next
    // login there passes: a session grace never crosses real uids.
    let code = e.next_code();
    let (_, results) = in_new_session_run_by(
        &s,
        &u.name,
        &[(&u.name, &[&code]), (&other.name, &[]), (&u.name, &[])],
    );
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[0], pam::PAM_SUCCESS, "{}", d.log());
    assert_ne!(results[1], pam::PAM_SUCCESS, "{}", d.log());
    assert_eq!(results[2], pam::PAM_SUCCESS, "{}", d.log());
}

/// The lines of a service file: the password (pam_unix, Debian's shape), then the module.
fn password_then_module(d: &Toopherd, options: &str) -> String {
    format!(
        "auth     [success=1 default=ignore] pam_unix.so\n\
         auth     requisite pam_deny.so\n\
         auth     required pam_permit.so\n\
         auth     required {m} socket={s} {options}\n\
         account  required pam_unix.so\n",
        m = toopher_tests::module_path().display(),
        s = d.socket.display()
    )
}

#[test]
fn sudo_inside_an_ssh_login_is_within_its_grace_and_another_session_is_not() {
    let d = Toopherd::start_with(
        "[policy]\ngrace_period = 120\n[policy.services.sshd]\ngrace_period = 0\n",
    );
    let user = TestUser::create("ss");
    let mut e = d.enroll(&user.name);
    let sudo_service = "toopher-e2e-psudo";
    let _dropin = SudoersDropIn::install(&user.name, sudo_service);
    let m = toopher_tests::module_path();
    // sshd's PAM directory; sudo inside the SSH login sees the same /etc/pam.d.
    let pam = PamDir::new(
        "sshd",
        &format!(
            "{}session  required pam_loginuid.so\n\
             session  optional {m} socket={s}\n\
             password required pam_deny.so\n",
            password_then_module(&d, "grace_session"),
            m = m.display(),
            s = d.socket.display()
        ),
    );
    let sudo_stack = format!(
        "{}session  required pam_permit.so\n",
        password_then_module(&d, "prompts=1")
    );
    std::fs::write(pam.dir.path().join(sudo_service), &sudo_stack).expect("sudo service");
    let sshd = Sshd::start(pam);

    let code = e.next_code();
    let command = format!(
        "echo session=$(cat /proc/self/sessionid); echo '{pw}' | sudo -S -k -p '' id -u && echo SSH-LOGIN-OK",
        pw = user.password
    );
    let login = sshd.login_running(
        &user.name,
        &[&user.password, &code],
        "keyboard-interactive",
        &command,
    );
    assert!(login.ok, "{login:?}\n{}\n{}", sshd.log(), d.log());
    assert!(login.stdout.lines().any(|l| l == "0"), "{login:?}");
    let session: u32 = login
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("session="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no session id: {login:?}"));
    let log = d.log();
    assert!(
        log.contains(&format!(
            "grace user={} bound to audit session {session}",
            user.name
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "auth user={} service={sudo_service} rhost=- tty=- outcome=allowed rule=grace_period",
            user.name
        )),
        "{log}"
    );
    let out = d.ctl(&[
        "policy",
        "explain",
        &user.name,
        "--service",
        sudo_service,
        "--session",
        &session.to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("decision: outcome=allowed rule=grace_period"),
        "{text}"
    );

    // sudo from another audit session of the same user asks for the code (and, given
    // none, is refused).
    let other = PamDir::new(sudo_service, &sudo_stack);
    let uid = toopher_tests::system::uid_of(&user.name);
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            &format!(
                "mount --make-rprivate / && mount --bind '{dir}' /etc/pam.d && \
                 echo {uid} > /proc/self/loginuid && \
                 echo '{pw}' | setpriv --reuid={u} --regid={u} --init-groups -- sudo -S -k -p '' id -u",
                dir = other.dir.path().display(),
                pw = user.password,
                u = user.name
            ),
        ])
        .output()
        .expect("sudo");
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        key(&last_decision(&d, &user.name)),
        "outcome=challenge rule=availability",
        "{}",
        d.log()
    );
}

#[test]
fn forward_pass_through_sshd_password_authentication() {
    let d = Toopherd::start();
    let user = TestUser::create("fp");
    let mut e = d.enroll(&user.name);
    let m = toopher_tests::module_path();
    let pam = PamDir::new(
        "sshd",
        &format!(
            "auth     required {m} socket={s} forward_pass\n\
             auth     required pam_unix.so use_first_pass\n\
             account  required pam_unix.so\n\
             session  required pam_permit.so\n\
             password required pam_deny.so\n",
            m = m.display(),
            s = d.socket.display()
        ),
    );
    let sshd = Sshd::start_with(pam, SshAuth::Password);
    let login_with =
        |answer: &str| sshd.login_running(&user.name, &[answer], "password", "echo SSH-LOGIN-OK");

    let code = e.next_code();
    let ok = login_with(&format!("{}{code}", user.password));
    assert!(ok.ok, "{ok:?}\n{}\n{}", sshd.log(), d.log());
    assert!(
        sshd.log()
            .contains(&format!("Accepted password for {}", user.name)),
        "{}",
        sshd.log()
    );
    assert!(
        d.log().contains(&format!(
            "auth user={} service=sshd rhost=127.0.0.1",
            user.name
        )) && d.log().contains("outcome=granted method=otp"),
        "{}",
        d.log()
    );
    assert_decided(
        &d,
        &user.name,
        Some("127.0.0.1"),
        "sshd",
        "outcome=challenge rule=availability",
    );

    // A wrong code: refused, and the password never reached pam_unix's check.
    let wrong = otp::wrong_code(&e.secret);
    let bad = login_with(&format!("{}{wrong}", user.password));
    assert!(!bad.ok, "{bad:?}");
    assert!(
        d.log().contains("outcome=denied reason=wrong_code"),
        "{}",
        d.log()
    );

    // A wrong password with the right code: refused (the code was spent first).
    let code = e.next_code();
    let bad = login_with(&format!("not-the-password{code}"));
    assert!(!bad.ok, "{bad:?}");
    assert!(
        sshd.log()
            .matches(&format!("Accepted password for {}", user.name))
            .count()
            == 1,
        "{}",
        sshd.log()
    );
}

mod toopher {
    //! The policy in front of the Toopher backend: an exempt login never reaches the API.
    use super::*;
    use toopher_tests::sim::Sim;

    #[test]
    fn the_policy_decides_before_the_toopher_api_is_asked() {
        let sim = Sim::start();
        let user = TestUser::create("tt");
        let loner = TestUser::create("tl");
        let required = TestGroup::create("t", &[&loner.name]);
        sim.paired(&user.name);
        // [toopher] keys come first in the simulator's config; [policy] after them.
        let d = sim.toopherd(
            "availability = \"available\"",
            &format!(
                "[policy]\ntrusted_networks = [\"10.0.0.0/8\"]\nrequired_groups = [\"{}\"]\n",
                required.name
            ),
        );
        let s = stack(&d, "toopher-policy");
        let svc = "toopher-policy";

        let t = pam::login(&s, &user.name, &[], Some("10.1.2.3"));
        assert_eq!(
            (t.auth, t.prompts()),
            (pam::PAM_SUCCESS, 0),
            "{t:?}\n{}",
            d.log()
        );
        assert!(
            sim.calls("/authentication_requests").is_empty() && sim.calls("/users").is_empty(),
            "an exempt login must not reach the API"
        );
        assert_decided(
            &d,
            &user.name,
            Some("10.1.2.3"),
            svc,
            "outcome=allowed rule=trusted_network",
        );

        // Outside the network: the push, and explain gives both enrolment outcomes.
        let answer = sim.answer_next_push(Some(None));
        let t = pam::login(&s, &user.name, &[""], Some("192.0.2.1"));
        assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}\n{}", d.log());
        answer.join().unwrap().expect("a push was sent");
        assert_decided(
            &d,
            &user.name,
            Some("192.0.2.1"),
            svc,
            "outcome=challenge rule=availability",
        );
        let text = explain(&d, &user.name, Some("192.0.2.1"), svc);
        assert!(
            text.contains("decision: if not enrolled: outcome=allowed rule=availability"),
            "{text}"
        );

        // A required group without a pairing is denied, though the default is available.
        let t = pam::login(&s, &loner.name, &[], Some("192.0.2.1"));
        assert_eq!(t.auth, pam::PAM_AUTH_ERR, "{t:?}\n{}", d.log());
        assert_eq!(
            key(&last_decision(&d, &loner.name)),
            "outcome=denied rule=required_group",
            "{}",
            d.log()
        );
    }
}
