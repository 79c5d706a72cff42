//! Toopher pairing and account management through toopherctl and toopherd against the
//! simulator, and two-way registration that ends in a pairing inside the login. Needs root.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use toopher_ipc::{AdminRequest, AdminResponse, Client, ErrorKind, ErrorReply, Timeouts};
use toopher_tests::artifact;
use toopher_tests::daemon::Toopherd;
use toopher_tests::pam::{self, Stack};
use toopher_tests::sim::Sim;
use toopher_tests::system::{TestUser, require_root};

/// Runs `toopherctl pair ...`; once it prints the pairing id, `phone(sim, id)` plays the
/// phone. Returns toopherctl's exit success and its output.
fn pair_with(
    sim: &Arc<Sim>,
    d: &Toopherd,
    args: &[&str],
    phone: impl FnOnce(&Sim, &str),
) -> (bool, String) {
    let mut child = Command::new(artifact("toopherctl"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("pair")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let id = loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("toopherctl pair ended early: {seen}\n{err}\n{}", d.log());
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(line) = seen
            .lines()
            .find(|l| l.starts_with("Pairing ") && l.contains(" started for "))
        {
            break line.split(' ').nth(1).unwrap().to_string();
        }
    };
    phone(sim, &id);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let ok = child.wait().unwrap().success();
    (ok, seen + &rest)
}

fn status(d: &Toopherd, user: &str) -> serde_json::Value {
    let out = d.ctl(&["status", user, "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pairing_by_phrase_then_a_push_login() {
    require_root();
    // A real account: toopherd refuses names neither it nor the system knows.
    let alice_account = TestUser::create("ea");
    let alice = alice_account.name.as_str();
    let sim = Sim::start();
    let d = sim.toopherd("", "");
    let (ok, out) = pair_with(&sim, &d, &[alice, "--phrase", "correct horse"], |sim, _| {
        sim.handle.enter_pairing_phrase("correct horse").unwrap();
    });
    assert!(ok, "{out}");
    assert!(
        out.contains("Waiting for the phone to confirm"),
        "no countdown: {out}"
    );
    assert!(out.contains(&format!("{alice}: paired")), "{out}");
    let pairing = status(&d, alice)["pairing_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sim.handle.active_pairing_id(alice).as_deref(),
        Some(pairing.as_str())
    );
    let answer = sim.answer_next_push(Some(None));
    let t = pam::login(&Stack::toopher(&d.socket, ""), alice, &[""], None);
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:?}");
    answer.join().unwrap().unwrap();
}

#[test]
fn pairing_by_sms_and_by_qr_code() {
    require_root();
    // Real accounts: toopherd refuses names neither it nor the system knows.
    let bob_account = TestUser::create("eb");
    let bob = bob_account.name.as_str();
    let carol_account = TestUser::create("ec");
    let carol = carol_account.name.as_str();
    let sim = Sim::start();
    let d = sim.toopherd("", "");
    let (ok, out) = pair_with(
        &sim,
        &d,
        &[bob, "--sms", "5551234", "--country", "1"],
        |sim, id| {
            sim.handle.complete_pairing(id).unwrap();
        },
    );
    assert!(ok, "{out}");
    let sms = sim.calls("/pairings/create/sms");
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].param("phone_number"), Some("5551234"));
    assert_eq!(sms[0].param("phone_country"), Some("1"));

    let png = d.dir.path().join("qr.png");
    let (ok, out) = pair_with(
        &sim,
        &d,
        &[carol, "--qr", "--qr-file", png.to_str().unwrap()],
        |sim, id| {
            sim.handle.complete_pairing(id).unwrap();
        },
    );
    assert!(ok, "{out}");
    assert!(out.contains('\u{2580}'), "QR code not drawn: {out}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    assert!(status(&d, carol)["pairing_id"].is_string());
}

#[test]
fn a_pairing_left_unconfirmed_times_out() {
    require_root();
    // A real account: toopherd refuses names neither it nor the system knows.
    let dave_account = TestUser::create("ed");
    let dave = dave_account.name.as_str();
    let sim = Sim::start();
    let d = sim.toopherd("", "");
    let (ok, out) = pair_with(&sim, &d, &[dave, "--qr", "--timeout", "2"], |_, _| {});
    assert!(!ok, "{out}");
    assert!(status(&d, dave)["pairing_id"].is_null());
}

#[test]
fn someone_elses_pairing_is_never_recorded() {
    require_root();
    // A real account: toopherd refuses names neither it nor the system knows.
    let frank_account = TestUser::create("ef");
    let frank = frank_account.name.as_str();
    let sim = Sim::start();
    let erin = sim.paired("erin");
    let d = sim.toopherd("", "");
    let mut c = Client::connect(&d.socket, Timeouts::default()).unwrap();
    let r = c.call(&AdminRequest::PairStatus {
        user: frank.into(),
        pairing_id: erin.pairing_id.unwrap(),
    });
    assert!(
        matches!(
            r,
            Ok(AdminResponse::Error(ErrorReply {
                kind: ErrorKind::Forbidden,
                ..
            }))
        ),
        "{r:?}"
    );
    assert!(status(&d, frank)["pairing_id"].is_null());
}

#[test]
fn reset_links_enable_disable_reset_and_terminals() {
    require_root();
    // A real account: toopherd refuses names neither it nor the system knows.
    let gina_account = TestUser::create("eg");
    let gina = gina_account.name.as_str();
    let sim = Sim::start();
    let d = sim.toopherd("", "");
    let (ok, _) = pair_with(&sim, &d, &[gina, "--phrase", "blue sky"], |sim, _| {
        sim.handle.enter_pairing_phrase("blue sky").unwrap();
    });
    assert!(ok);
    let link = d.ctl(&["reset-link", gina]);
    assert!(link.status.success(), "{link:?}");
    assert!(
        String::from_utf8_lossy(&link.stdout).starts_with("http"),
        "{link:?}"
    );
    let mail = d.ctl(&["reset-link", gina, "--email", "gina@example.com"]);
    assert!(mail.status.success(), "{mail:?}");
    assert!(
        sim.handle
            .reset_emails()
            .iter()
            .any(|(_, to)| to == "gina@example.com"),
        "{:?}",
        sim.handle.reset_emails()
    );

    assert!(d.ctl(&["disable", gina]).status.success());
    assert!(
        sim.calls("/users/")
            .iter()
            .any(|e| e.param("toopher_authentication_enabled") == Some("false"))
    );
    let t = pam::login(&Stack::toopher(&d.socket, ""), gina, &[""], None);
    assert_eq!(t.auth, pam::PAM_AUTH_ERR);
    assert!(d.ctl(&["enable", gina]).status.success());
    assert_eq!(status(&d, gina)["enabled"], true);

    let created = d.ctl(&["terminals", "create", gina, "Gina's laptop", "laptop-1"]);
    assert!(created.status.success(), "{created:?}");
    let text = String::from_utf8_lossy(&created.stdout).into_owned();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_string();
    let shown = d.ctl(&["terminals", "show", gina, &id]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("Gina's laptop"),
        "{shown:?}"
    );

    let reset = d.ctl(&["reset", gina]);
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(sim.calls("/users/reset").len(), 1);
    assert_eq!(status(&d, gina)["state"], "none");
    assert!(status(&d, gina)["pairing_id"].is_null());
}

#[test]
fn two_way_registration_ends_in_a_pairing_inside_the_login() {
    require_root();
    // A real account: toopherd refuses names neither it nor the system knows.
    let hank_account = TestUser::create("eh");
    let hank = hank_account.name.as_str();
    let sim = Sim::start();
    let d = sim.toopherd("enroll = \"two-way\"", "");
    let stack = Stack::toopher(&d.socket, "");
    let mut prompts = Vec::new();
    let phone = Arc::clone(&sim);
    let mut confirming = None;
    let t = pam::login_with(&stack, hank, None, &mut |_, prompt| {
        prompts.push(prompt.to_string());
        match prompts.len() {
            1 => {
                let at = prompt.find("Registration code: ").unwrap() + 19;
                let out = d.ctl(&["registration", "approve", hank, &prompt[at..at + 6]]);
                assert!(out.status.success(), "{out:?}");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                Some(
                    text.lines()
                        .next()
                        .unwrap()
                        .rsplit(": ")
                        .next()
                        .unwrap()
                        .trim()
                        .to_string(),
                )
            }
            2 => {
                // The phone confirms the phrase once toopherd has created the pairing.
                let sim = Arc::clone(&phone);
                confirming = Some(std::thread::spawn(move || {
                    let until = Instant::now() + Duration::from_secs(15);
                    while sim.handle.enter_pairing_phrase("green apple").is_err()
                        && Instant::now() < until
                    {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }));
                Some("green apple".into())
            }
            _ => None,
        }
    });
    // The simulated phone lets go of the simulator before the test ends (its CA
    // directory is removed when the last handle drops).
    if let Some(phone) = confirming {
        phone.join().unwrap();
    }
    assert_eq!(t.auth, pam::PAM_SUCCESS, "{t:#?}\n{}", d.log());
    assert!(
        prompts[1].starts_with("Registered (2000). Now pair your phone"),
        "{}",
        prompts[1]
    );
    assert!(prompts[1].ends_with("Type the pairing phrase the Toopher app shows: "));
    assert!(d.log().contains("detail=paired_in_login"));
    assert!(status(&d, hank)["pairing_id"].is_string());
}

#[test]
fn a_user_cannot_pair_a_new_phone_over_their_own_pairing() {
    require_root();
    let sim = Sim::start();
    let d = sim.toopherd("", "");
    std::fs::set_permissions(
        d.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (ok, out) = pair_with(
        &sim,
        &d,
        &["daemon", "--phrase", "correct horse"],
        |sim, _| {
            sim.handle.enter_pairing_phrase("correct horse").unwrap();
        },
    );
    assert!(ok, "{out}");
    let pairing = status(&d, "daemon")["pairing_id"].clone();
    assert!(pairing.is_string(), "{pairing}");
    // Someone with daemon's session (not its phone) tries to move it to their own phone.
    let uid = toopher_tests::system::uid_of("daemon");
    let out = toopher_tests::daemon::ctl_as(
        &d.socket,
        &[
            "pair",
            "daemon",
            "--phrase",
            "battery staple",
            "--timeout",
            "2",
        ],
        Some(uid),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs root or the admin group"),
        "{out:?}"
    );
    assert_eq!(status(&d, "daemon")["pairing_id"], pairing);
}

/// The requests that act for an account at the service, and status, under the Toopher
/// backend: a name neither the system nor toopherd knows is an error, from toopherctl
/// and from toopherd itself, and the service is never asked.
#[test]
fn a_user_that_does_not_exist_is_refused_under_the_toopher_backend() {
    require_root();
    let sim = Sim::start();
    let d = sim.toopherd("enroll = \"two-way\"", "");
    for args in [
        &["status", "nosuchuser"][..],
        &["status", "nosuchuser", "--json"],
        &[
            "pair",
            "nosuchuser",
            "--phrase",
            "correct horse",
            "--timeout",
            "1",
        ],
        &["pair", "nosuchuser", "--qr", "--timeout", "1"],
        &["reset-link", "nosuchuser"],
        &["reset-link", "nosuchuser", "--email", "x@example.com"],
        &["terminals", "create", "nosuchuser", "laptop", "laptop-1"],
        &["registration", "approve", "nosuchuser", "123456"],
        &["disable", "nosuchuser"],
        &["enable", "nosuchuser"],
    ] {
        let out = d.ctl(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            stderr.contains("no such user: nosuchuser"),
            "{args:?}: {stderr}"
        );
    }
    // toopherd refuses on its own, whoever the client is.
    let mut c = Client::connect(&d.socket, Timeouts::default()).unwrap();
    for req in [
        AdminRequest::Pair {
            user: "nosuchuser".into(),
            by: toopher_ipc::PairBy::Qr,
        },
        AdminRequest::ResetLink {
            user: "nosuchuser".into(),
            email: None,
        },
        AdminRequest::TerminalCreate {
            user: "nosuchuser".into(),
            name: "laptop".into(),
            requester_id: "laptop-1".into(),
        },
        AdminRequest::RegistrationApprove {
            user: "nosuchuser".into(),
            code: toopher_ipc::Secret::new("123456"),
        },
    ] {
        match c.call(&req) {
            Ok(AdminResponse::Error(ErrorReply {
                kind: ErrorKind::NotFound,
                message,
            })) => assert_eq!(message, "no such user: nosuchuser", "{req:?}"),
            other => panic!("{req:?}: {other:?}"),
        }
    }
    for path in ["/pairings", "/user_terminals"] {
        assert!(sim.calls(path).is_empty(), "{path}: {:?}", sim.calls(path));
    }
}
