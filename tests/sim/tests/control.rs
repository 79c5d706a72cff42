//! The HTTP control interface and the `toopher-sim` binary.

mod common;

use std::io::BufRead;
use std::time::Duration;

use common::control;
use toopher_api::{AuthenticateOptions, ToopherApi};
use toopher_sim::{SimOptions, Simulator, util};

#[tokio::test]
async fn http_control_channel() {
    let sim = Simulator::start(SimOptions::http()).await.unwrap();
    let api = common::client(&sim).build().unwrap();

    let (s, info) = control(&sim, "GET", "/info", "").await;
    assert_eq!(s, 200);
    assert_eq!(info["consumer_key"], sim.consumer_key());

    let (s, u) = control(
        &sim,
        "POST",
        "/users",
        r#"{"name":"jdoe","totp_secret":"JBSWY3DPEHPK3PXP"}"#,
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["totp_secret"], "JBSWY3DPEHPK3PXP");
    let pid = u["pairing_id"].as_str().unwrap().to_owned();
    let (s, _) = control(&sim, "POST", "/users", r#"{"name":"jdoe"}"#).await;
    assert_eq!(s, 409);

    let (s, otp) = control(&sim, "GET", &format!("/pairings/{pid}/otp?at=59"), "").await;
    assert_eq!(s, 200);
    assert_eq!(
        otp["otp"],
        util::totp(&util::base32_decode("JBSWY3DPEHPK3PXP").unwrap(), 59)
    );

    // Grant, deny with a reason, time out.
    for (action, body, granted, reason) in [
        ("grant", "", true, None),
        ("deny", r#"{"reason":"Not me"}"#, false, Some("Not me")),
        ("timeout", "", false, Some("The request has timed out.")),
    ] {
        let r = api
            .authenticate("jdoe", &AuthenticateOptions::new())
            .await
            .unwrap();
        let (s, w) = control(&sim, "POST", "/requests/wait?timeout_ms=1000", "").await;
        assert_eq!((s, w["id"].as_str()), (200, Some(r.id.as_str())));
        let (s, _) = control(&sim, "POST", &format!("/requests/latest/{action}"), body).await;
        assert_eq!(s, 200);
        let r = common::poll(&api, r, 5).await;
        assert_eq!(r.granted, granted);
        if let Some(reason) = reason {
            assert_eq!(r.reason, reason);
        }
    }
    let (s, _) = control(&sim, "POST", "/requests/wait?timeout_ms=100", "").await;
    assert_eq!(s, 408);
    let (s, _) = control(&sim, "POST", "/requests/latest/grant", "").await;
    assert_eq!(s, 404);

    // Auto answer.
    let (s, _) = control(
        &sim,
        "POST",
        "/auto_answer",
        r#"{"grant":false,"after_ms":50,"reason":"auto no"}"#,
    )
    .await;
    assert_eq!(s, 200);
    let r = api
        .authenticate("jdoe", &AuthenticateOptions::new())
        .await
        .unwrap();
    let r = common::poll(&api, r, 5).await;
    assert_eq!((r.granted, r.reason.as_str()), (false, "auto no"));
    control(&sim, "DELETE", "/auto_answer", "").await;

    // Failures.
    let (s, _) = control(
        &sim,
        "POST",
        "/failures",
        r#"{"endpoint":"*","failure":{"kind":"rate_limit","retry_after":5},"count":1}"#,
    )
    .await;
    assert_eq!(s, 200);
    let e = api.get_user_by_name("jdoe").await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    control(
        &sim,
        "POST",
        "/failures",
        r#"{"endpoint":"/users","failure":{"kind":"status","status":500}}"#,
    )
    .await;
    assert!(
        api.get_user_by_name("jdoe")
            .await
            .unwrap_err()
            .is_unreachable()
    );
    assert!(
        api.get_user_by_name("jdoe")
            .await
            .unwrap_err()
            .is_unreachable()
    );
    control(&sim, "DELETE", "/failures", "").await;
    api.get_user_by_name("jdoe").await.unwrap();

    // Pairing by phrase, completed through the control channel.
    let p = api.pair("kim", Some("purple monkey"), &[]).await.unwrap();
    let (s, done) = control(
        &sim,
        "POST",
        "/pairings/phrase",
        r#"{"phrase":"purple monkey"}"#,
    )
    .await;
    assert_eq!((s, done["pairing_id"].as_str()), (200, Some(p.id.as_str())));

    // The log, readable and clearable.
    let (s, log) = control(&sim, "GET", "/log", "").await;
    assert_eq!(s, 200);
    assert!(log.as_array().unwrap().len() > 5);
    control(&sim, "DELETE", "/log", "").await;
    assert!(sim.request_log().is_empty());
    let (s, _) = control(&sim, "POST", "/users", "{bad json").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn binary_prints_a_json_line_and_serves() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_toopher-sim"))
        .args([
            "--no-interactive",
            "--user",
            "alice:JBSWY3DPEHPK3PXP",
            "--auto-grant",
            "10",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let result = async {
        let api = ToopherApi::builder(
            info["consumer_key"].as_str().unwrap(),
            info["consumer_secret"].as_str().unwrap(),
        )
        .base_url(info["url"].as_str().unwrap())
        .ca_file(info["ca_file"].as_str().unwrap())
        .build()
        .unwrap();
        assert_eq!(info["users"][0]["name"], "alice");
        let r = api
            .authenticate("alice", &AuthenticateOptions::new())
            .await
            .unwrap();
        common_poll(&api, r).await
    }
    .await;
    // SIGTERM, not SIGKILL: the simulator then removes the CA directory it created.
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    assert!(result);
}

async fn common_poll(api: &ToopherApi, r: toopher_api::AuthenticationRequest) -> bool {
    common::poll(api, r, 5).await.is_granted()
}
