//! Every client method against the simulator.

mod common;

use std::time::Duration;

use common::{https, poll};
use toopher_api::{ApiErrorKind, AuthenticateOptions, Error};
use toopher_sim::{AutoAnswer, NewUser, util};

#[tokio::test]
async fn pairing_by_phrase_sms_and_qr() {
    let (sim, api) = https().await;

    let mut p = api.pair("alice", Some("correct horse"), &[]).await.unwrap();
    assert!(p.pending && !p.enabled);
    assert_eq!(p.user.name, "alice");
    assert_eq!(sim.enter_pairing_phrase("correct horse").unwrap(), p.id);
    p.refresh_from_server(&api).await.unwrap();
    assert!(!p.pending && p.enabled);

    let sms = api
        .pair("bob", Some("+1 555 0100"), &[("phone_country", "1")])
        .await
        .unwrap();
    assert!(sms.pending);
    let qr = api.pair("carol", None, &[]).await.unwrap();
    let png = qr.get_qr_code_image(&api).await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 100);
    sim.complete_pairing(&qr.id).unwrap();
    let again = api.get_pairing_by_id(&qr.id).await.unwrap();
    assert!(again.enabled && !again.pending);

    let all = sim.request_log();
    assert!(all.iter().all(|e| e.oauth_ok && e.status == Some(200)));
    let log: Vec<_> = all
        .into_iter()
        .filter(|e| e.path.starts_with("/pairings/create"))
        .collect();
    let paths: Vec<&str> = log.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/pairings/create",
            "/pairings/create/sms",
            "/pairings/create/qr"
        ]
    );
    assert_eq!(log[0].param("pairing_phrase"), Some("correct horse"));
    assert_eq!(log[1].param("phone_number"), Some("+1 555 0100"));
    assert_eq!(log[1].param("phone_country"), Some("1"));
    assert_eq!(log[2].param("user_name"), Some("carol"));
}

#[tokio::test]
async fn push_granted_by_the_control_interface() {
    let (sim, api) = https().await;
    let u = sim.create_paired_user("jdoe").unwrap();
    let opts = AuthenticateOptions::new()
        .terminal_name("host1 sshd 10.0.0.5")
        .requester_specified_terminal_id("host1:sshd:10.0.0.5")
        .action_name("Log In")
        .automation_allowed(false)
        .challenge_required(true);
    let r = api.authenticate("jdoe", &opts).await.unwrap();
    assert!(r.pending && !r.is_granted() && !r.is_denied());
    assert_eq!(r.terminal.name, "host1 sshd 10.0.0.5");
    assert_eq!(r.terminal.requester_specified_id, "host1:sshd:10.0.0.5");
    assert_eq!(r.action.name, "Log In");
    assert_eq!(r.user.name, "jdoe");

    let pending = sim.pending_requests();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, r.id);
    assert_eq!(pending[0].pairing_id, u.pairing_id.clone().unwrap());
    assert!(!pending[0].automation_allowed && pending[0].challenge_required);
    let entry = sim.request_log().pop().unwrap();
    assert_eq!(entry.path, "/authentication_requests/initiate");
    assert_eq!(entry.param("user_name"), Some("jdoe"));
    assert_eq!(entry.param("automation_allowed"), Some("false"));
    assert_eq!(entry.param("challenge_required"), Some("true"));

    assert_eq!(
        sim.wait_for_pending(Duration::from_secs(1)).await,
        Some(r.id.clone())
    );
    sim.grant(&r.id).unwrap();
    let r = poll(&api, r, 5).await;
    assert!(r.is_granted());
    assert!(!r.automated);
    assert_eq!(r.reason_code_number(), Some(toopher_sim::reason::GRANTED));

    // The same terminal is reused by its requester-specified id.
    let r2 = api.authenticate("jdoe", &opts).await.unwrap();
    assert_eq!(r2.terminal.id, r.terminal.id);
}

#[tokio::test]
async fn push_by_pairing_id_denied_with_reason_and_timed_out() {
    let (sim, api) = https().await;
    let u = sim.create_paired_user("jdoe").unwrap();
    let pid = u.pairing_id.unwrap();
    let r = api
        .authenticate(
            &pid,
            &AuthenticateOptions::new()
                .terminal_name("t")
                .action_name("sudo"),
        )
        .await
        .unwrap();
    assert_eq!(
        sim.request_log().pop().unwrap().param("pairing_id"),
        Some(pid.as_str())
    );
    sim.deny("latest", "Not me!\x1b[31m").unwrap();
    let r = poll(&api, r, 5).await;
    assert!(r.is_denied());
    assert_eq!(r.reason, "Not me!\x1b[31m", "reason exposed as-is");

    let r = api
        .authenticate_by_pairing_id(&pid, &AuthenticateOptions::new().terminal_name("t"))
        .await
        .unwrap();
    sim.time_out(&r.id).unwrap();
    let r = poll(&api, r, 5).await;
    assert!(r.is_denied());
    assert_eq!(r.reason_code_number(), Some(toopher_sim::reason::TIMED_OUT));
    // A settled request cannot be answered again.
    assert!(sim.grant(&r.id).is_err());

    // Request TTL: pending requests time out by themselves.
    sim.set_request_ttl(Some(Duration::from_millis(100)));
    let r = api
        .authenticate_by_user_name("jdoe", &AuthenticateOptions::new())
        .await
        .unwrap();
    let r = poll(&api, r, 5).await;
    assert!(r.is_denied());
}

#[tokio::test]
async fn auto_answer_and_automation() {
    let (sim, api) = https().await;
    sim.create_paired_user("jdoe").unwrap();
    sim.set_auto_answer(Some(AutoAnswer {
        grant: true,
        after_ms: 400,
        reason: None,
        automated: false,
    }));
    let r = api
        .authenticate("jdoe", &AuthenticateOptions::new())
        .await
        .unwrap();
    assert!(r.pending, "answered after 400 ms, not at once");
    let r = poll(&api, r, 5).await;
    assert!(r.is_granted() && !r.automated);

    sim.set_auto_answer(Some(AutoAnswer {
        grant: true,
        after_ms: 0,
        reason: None,
        automated: true,
    }));
    let r = api
        .authenticate("jdoe", &AuthenticateOptions::new())
        .await
        .unwrap();
    let r = poll(&api, r, 5).await;
    assert!(r.is_granted() && r.automated);

    // automation_allowed=false: the app may not answer by itself.
    let r = api
        .authenticate(
            "jdoe",
            &AuthenticateOptions::new().automation_allowed(false),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut r2 = r.clone();
    r2.refresh_from_server(&api).await.unwrap();
    assert!(r2.pending);

    sim.set_auto_answer(Some(AutoAnswer {
        grant: false,
        after_ms: 10,
        reason: Some("Denied by policy".into()),
        automated: false,
    }));
    let r = api
        .authenticate("jdoe", &AuthenticateOptions::new())
        .await
        .unwrap();
    let r = poll(&api, r, 5).await;
    assert!(r.is_denied());
    assert_eq!(r.reason, "Denied by policy");
}

#[tokio::test]
async fn otp_on_initiate_and_otp_auth() {
    let (sim, api) = https().await;
    // A known secret: codes are computed independently of the simulator.
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    sim.create_user(&NewUser {
        totp_secret: Some(secret.into()),
        ..NewUser::paired("jdoe")
    })
    .unwrap();
    let key = util::base32_decode(secret).unwrap();
    let code = util::totp(&key, util::now_unix());

    let r = api
        .authenticate("jdoe", &AuthenticateOptions::new().otp(code.clone()))
        .await
        .unwrap();
    assert!(!r.pending && r.granted, "valid OTP grants at once");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = api
        .authenticate("jdoe", &AuthenticateOptions::new().otp(wrong))
        .await
        .unwrap();
    assert!(r.is_denied());
    assert!(sim.pending_requests().is_empty(), "no push was sent");
    let log = sim.request_log();
    assert!(log.iter().all(|e| e.param("otp") == Some("<redacted>")));
    assert!(!format!("{log:?}").contains(&code));

    // otp_auth settles a pending push.
    let r = api
        .authenticate("jdoe", &AuthenticateOptions::new())
        .await
        .unwrap();
    assert!(r.pending);
    let settled = api.authenticate_with_otp(&r.id, &code, &[]).await.unwrap();
    assert!(settled.is_granted());
    assert_eq!(settled.id, r.id);

    let mut r = api
        .authenticate("jdoe", &AuthenticateOptions::new())
        .await
        .unwrap();
    r.authenticate_with_otp(wrong, &api).await.unwrap();
    assert!(r.is_denied());
    assert_eq!(
        r.reason_code_number(),
        Some(toopher_sim::reason::OTP_INVALID)
    );
}

#[tokio::test]
async fn users_and_terminals() {
    let (sim, api) = https().await;
    let mut u = api.create_user("dave", &[]).await.unwrap();
    assert!(u.toopher_authentication_enabled);
    assert_eq!(api.get_user_by_id(&u.id).await.unwrap(), u);
    assert_eq!(api.get_user_by_name("dave").await.unwrap().id, u.id);
    assert!(matches!(
        api.get_user_by_name("nobody").await,
        Err(Error::NoSuchUser(_))
    ));

    let d = api.disable_user("dave").await.unwrap();
    assert!(!d.toopher_authentication_enabled);
    let e = api.enable_user("dave").await.unwrap();
    assert!(e.toopher_authentication_enabled);
    u.disable(&api).await.unwrap();
    assert!(!u.toopher_authentication_enabled);
    u.enable(&api).await.unwrap();
    u.refresh_from_server(&api).await.unwrap();
    assert!(u.toopher_authentication_enabled);
    let enable_posts: Vec<_> = sim
        .request_log()
        .into_iter()
        .filter(|e| e.method == "POST" && e.path == format!("/users/{}", u.id))
        .map(|e| e.param("toopher_authentication_enabled").map(str::to_owned))
        .collect();
    assert_eq!(
        enable_posts,
        [Some("false"), Some("true"), Some("false"), Some("true")].map(|s| s.map(str::to_owned))
    );

    sim.create_user(&NewUser {
        duplicate: true,
        paired: false,
        ..NewUser::paired("dave")
    })
    .unwrap();
    assert!(matches!(
        api.get_user_by_name("dave").await,
        Err(Error::MultipleUsers(_))
    ));

    let mut t = api
        .create_user_terminal("erin_not_yet", "laptop", "rsid-1", &[])
        .await
        .unwrap_err();
    assert_eq!(t.api_kind(), Some(ApiErrorKind::UserUnknown));
    api.create_user("erin", &[]).await.unwrap();
    let term = api
        .create_user_terminal("erin", "laptop", "rsid-1", &[])
        .await
        .unwrap();
    assert_eq!(term.requester_specified_id, "rsid-1");
    assert_eq!(term.user.name, "erin");
    let mut got = api.get_user_terminal_by_id(&term.id).await.unwrap();
    assert_eq!(got, term);
    got.refresh_from_server(&api).await.unwrap();
    t = api
        .create_user_terminal("erin", "laptop", "rsid-1", &[])
        .await
        .unwrap_err();
    assert_eq!(t.status(), Some(409));
    let log = sim.request_log();
    let create = log
        .iter()
        .rev()
        .find(|e| e.path == "/user_terminals/create")
        .unwrap();
    assert_eq!(create.param("requester_specified_id"), Some("rsid-1"));
    assert_eq!(create.param("name"), Some("laptop"));
}

#[tokio::test]
async fn reset_user_and_reset_links() {
    let (sim, api) = https().await;
    let su = sim.create_paired_user("frank").unwrap();
    let pid = su.pairing_id.unwrap();
    let pairing = api.get_pairing_by_id(&pid).await.unwrap();

    let link = api
        .get_pairing_reset_link(&pid, Some("Favourite colour?"), Some("blue"), &[])
        .await
        .unwrap();
    assert!(link.starts_with(sim.base_url()), "{link}");
    let link2 = pairing.get_reset_link(&api, None, None).await.unwrap();
    assert_ne!(link, link2);
    let entry = sim
        .request_log()
        .into_iter()
        .find(|e| e.path.ends_with("/generate_reset_link"))
        .unwrap();
    assert_eq!(entry.param("security_question"), Some("Favourite colour?"));

    api.email_pairing_reset_link_to_user(&pid, "frank@example.com", &[])
        .await
        .unwrap();
    pairing
        .email_reset_link(&api, "f2@example.com")
        .await
        .unwrap();
    assert_eq!(
        sim.reset_emails(),
        vec![
            (pid.clone(), "frank@example.com".to_owned()),
            (pid.clone(), "f2@example.com".to_owned())
        ]
    );
    assert_eq!(sim.request_log().last().unwrap().status, Some(201));

    api.reset_user("frank").await.unwrap();
    let p = api.get_pairing_by_id(&pid).await.unwrap();
    assert!(!p.enabled);
    assert_eq!(p.deactivated, Some(true));
    let e = api
        .authenticate("frank", &AuthenticateOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.api_kind(), Some(ApiErrorKind::PairingDeactivated));
    assert_eq!(e.error_code(), Some(707));

    let user = api.get_user_by_name("frank").await.unwrap();
    user.reset(&api).await.unwrap();
    assert_eq!(
        sim.request_log().last().unwrap().param("user_name"),
        Some("frank")
    );
}

#[tokio::test]
async fn generic_get_and_post() {
    let (sim, api) = https().await;
    let v = api
        .post("/users/create", &[("name", "gina")])
        .await
        .unwrap();
    assert_eq!(v["name"], "gina");
    let list = api.get("/users", &[("name", "gina")]).await.unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let id = v["id"].as_str().unwrap();
    let one = api.get(&format!("users/{id}"), &[]).await.unwrap();
    assert_eq!(one["id"], id);
    assert!(matches!(
        api.get("/users?name=x", &[]).await,
        Err(Error::InvalidArgument(_))
    ));
    // Parameters with characters that need encoding survive signing and transport.
    let odd = "ünï cødé & = + / ? %20";
    let v = api.post("/users/create", &[("name", odd)]).await.unwrap();
    assert_eq!(v["name"], odd);
    let list = api.get("/users", &[("name", odd)]).await.unwrap();
    assert_eq!(list[0]["name"], odd);
    assert!(sim.request_log().iter().all(|e| e.oauth_ok));
}

#[tokio::test]
async fn string_reason_codes_and_unknown_fields_are_accepted() {
    let sim = toopher_sim::Simulator::start(toopher_sim::SimOptions {
        string_reason_codes: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let api = common::client(&sim).build().unwrap();
    sim.create_paired_user("h").unwrap();
    let r = api
        .authenticate("h", &AuthenticateOptions::new())
        .await
        .unwrap();
    sim.grant(&r.id).unwrap();
    let r = poll(&api, r, 5).await;
    assert_eq!(r.reason_code.as_deref(), Some("100"));
    // The simulator sends `deactivated` on pairings; the typed field has it.
    let p = api.pair("i", Some("phrase"), &[]).await.unwrap();
    assert_eq!(p.deactivated, Some(false));
}
