//! Every error mapping, against the simulator.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::https;
use toopher_api::{
    ApiErrorKind, AuthenticateOptions, Error, ErrorClass, FixedClock, FixedNonce, ToopherApi,
    TransportKind,
};
use toopher_sim::{Failure, FailureRule, NewUser, SimOptions, Simulator};

#[tokio::test]
async fn toopher_error_codes() {
    let (sim, api) = https().await;
    let none = AuthenticateOptions::new();

    // 705 unknown user.
    let e = api.authenticate("ghost", &none).await.unwrap_err();
    assert_eq!(
        (e.status(), e.error_code(), e.api_kind()),
        (Some(409), Some(705), Some(ApiErrorKind::UserUnknown))
    );
    assert!(e.is_rejection() && !e.is_unreachable());
    assert_eq!(e.api_error().unwrap().message, "No matching user exists.");

    // 704 user disabled (on initiate, and on polling a request).
    sim.create_paired_user("dis").unwrap();
    let r = api.authenticate("dis", &none).await.unwrap();
    sim.update_user("dis", Some(false), None).unwrap();
    let e = api.authenticate("dis", &none).await.unwrap_err();
    assert_eq!(e.api_kind(), Some(ApiErrorKind::UserDisabled));
    assert_eq!(e.error_code(), Some(704));
    let e = api
        .get_authentication_request_by_id(&r.id)
        .await
        .unwrap_err();
    assert_eq!(e.api_kind(), Some(ApiErrorKind::UserDisabled));

    // 706 unknown terminal (requester-specified id without a name, or a bad terminal_id).
    sim.create_paired_user("term").unwrap();
    let e = api
        .authenticate(
            "term",
            &AuthenticateOptions::new().requester_specified_terminal_id("never-seen"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.api_kind(), Some(ApiErrorKind::TerminalUnknown));
    let e = api
        .authenticate(
            "term",
            &AuthenticateOptions::new().terminal_id("00000000-0000-4000-8000-000000000000"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), Some(706));

    // 707 pairing deactivated (by user name) and 601 (by pairing id).
    let u = sim.create_paired_user("deact").unwrap();
    let pid = u.pairing_id.unwrap();
    sim.deactivate_pairing(&pid).unwrap();
    let e = api.authenticate("deact", &none).await.unwrap_err();
    assert_eq!(
        (e.error_code(), e.api_kind()),
        (Some(707), Some(ApiErrorKind::PairingDeactivated))
    );
    let e = api.authenticate(&pid, &none).await.unwrap_err();
    assert_eq!(
        (e.status(), e.error_code(), e.api_kind()),
        (Some(403), Some(601), Some(ApiErrorKind::PairingDeactivated))
    );

    // 601 pairing not authorized yet (pending).
    let pending = sim
        .create_user(&NewUser {
            pending: true,
            ..NewUser::paired("pend")
        })
        .unwrap();
    let e = api
        .authenticate(&pending.pairing_id.unwrap(), &none)
        .await
        .unwrap_err();
    assert_eq!(
        (e.error_code(), e.api_kind()),
        (Some(601), Some(ApiErrorKind::PairingDeactivated))
    );
    assert!(
        e.api_error()
            .unwrap()
            .message
            .contains("not been authorized")
    );

    // 708 requires OTP.
    sim.create_user(&NewUser {
        requires_otp: true,
        ..NewUser::paired("otponly")
    })
    .unwrap();
    let e = api.authenticate("otponly", &none).await.unwrap_err();
    assert_eq!(
        (e.error_code(), e.api_kind()),
        (Some(708), Some(ApiErrorKind::RequiresOtp))
    );

    // 404, 409, 400.
    let e = api
        .get_pairing_by_id("00000000-0000-4000-8000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.api_kind()),
        (Some(404), Some(ApiErrorKind::NotFound))
    );
    let e = api
        .get_authentication_request_by_id("nope")
        .await
        .unwrap_err();
    assert_eq!(e.api_kind(), Some(ApiErrorKind::NotFound));
    api.create_user("dup", &[]).await.unwrap();
    let e = api.create_user("dup", &[]).await.unwrap_err();
    assert_eq!(
        (e.status(), e.api_kind()),
        (Some(409), Some(ApiErrorKind::Conflict))
    );
    let e = api
        .post("/pairings/create", &[("user_name", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.api_kind(), Some(ApiErrorKind::BadRequest));
}

#[tokio::test]
async fn oauth_failures_are_401() {
    let (sim, good) = https().await;
    good.create_user("ok", &[]).await.unwrap();

    let wrong_secret = ToopherApi::builder(sim.consumer_key(), "not-the-secret")
        .base_url(sim.base_url())
        .ca_file(sim.ca_file().unwrap())
        .build()
        .unwrap();
    let e = wrong_secret.get_user_by_name("ok").await.unwrap_err();
    assert_eq!(
        (e.status(), e.api_kind()),
        (Some(401), Some(ApiErrorKind::Unauthorized))
    );
    assert_eq!(
        e.api_error().unwrap().message,
        "Not a valid OAuth signed request"
    );
    assert!(e.is_rejection());

    let unknown_key = ToopherApi::builder("someone-else", sim.consumer_secret())
        .base_url(sim.base_url())
        .ca_file(sim.ca_file().unwrap())
        .build()
        .unwrap();
    assert_eq!(
        unknown_key
            .get_user_by_name("ok")
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );

    let stale = common::client(&sim)
        .clock(Arc::new(FixedClock(1_000_000)))
        .build()
        .unwrap();
    assert_eq!(
        stale.get_user_by_name("ok").await.unwrap_err().status(),
        Some(401)
    );

    let fixed = common::client(&sim)
        .nonce_source(Arc::new(FixedNonce("same-nonce".into())))
        .build()
        .unwrap();
    fixed.get_user_by_name("ok").await.unwrap();
    let e = fixed.get_user_by_name("ok").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "reused nonce");

    let log = sim.request_log();
    assert_eq!(
        log.iter()
            .filter(|e| e.status == Some(401) && !e.oauth_ok)
            .count(),
        4
    );
    assert_eq!(log.iter().filter(|e| e.oauth_ok).count(), 2);
}

#[tokio::test]
async fn injected_failures() {
    let (sim, api) = https().await;
    sim.create_paired_user("jdoe").unwrap();
    let none = AuthenticateOptions::new();

    // 5xx: unreachable for failmode purposes.
    sim.inject_failure(
        FailureRule::new(
            "/authentication_requests/initiate",
            Failure::Status {
                status: 503,
                error_code: None,
                error_message: Some("maintenance".into()),
            },
        )
        .times(1),
    );
    let e = api.authenticate("jdoe", &none).await.unwrap_err();
    assert_eq!(
        (e.status(), e.api_kind(), e.class()),
        (
            Some(503),
            Some(ApiErrorKind::ServerError),
            ErrorClass::ServerError
        )
    );
    assert!(e.is_unreachable() && !e.is_rejection());
    // `times(1)`: the next call goes through.
    let r = api.authenticate("jdoe", &none).await.unwrap();

    // 429 with Retry-After.
    sim.inject_failure(
        FailureRule::new(
            "/authentication_requests/*",
            Failure::RateLimit { retry_after: 17 },
        )
        .times(1),
    );
    let e = api
        .get_authentication_request_by_id(&r.id)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status(), e.api_kind()),
        (Some(429), Some(ApiErrorKind::RateLimited))
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));
    assert_eq!(e.class(), ErrorClass::RateLimited);

    // Malformed JSON on a 200: an error, never a grant.
    sim.inject_failure(FailureRule::new("*", Failure::Malformed { status: 200 }).times(1));
    let e = api
        .get_authentication_request_by_id(&r.id)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotJson { status: 200, .. }), "{e:?}");
    assert!(e.to_string().contains("could not be decoded as JSON"));
    assert_eq!(e.class(), ErrorClass::InvalidResponse);
    // ... and on a 502 (a proxy's error page): server error.
    sim.inject_failure(FailureRule::new("*", Failure::Malformed { status: 502 }).times(1));
    let e = api
        .get_authentication_request_by_id(&r.id)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotJson { status: 502, .. }));
    assert!(e.is_unreachable());

    // Dropped connection: transport failure.
    sim.inject_failure(FailureRule {
        method: Some("GET".into()),
        ..FailureRule::new("/authentication_requests/*", Failure::Drop).times(1)
    });
    let e = api
        .get_authentication_request_by_id(&r.id)
        .await
        .unwrap_err();
    assert!(e.is_transport() && e.is_unreachable(), "{e:?}");
    assert_eq!(e.transport_kind(), Some(TransportKind::Io));

    // A delay longer than the client's timeout.
    let impatient = common::client(&sim)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    sim.inject_failure(FailureRule::new("*", Failure::Delay { ms: 1500 }).times(1));
    let started = std::time::Instant::now();
    let e = impatient
        .get_authentication_request_by_id(&r.id)
        .await
        .unwrap_err();
    assert_eq!(e.transport_kind(), Some(TransportKind::Timeout), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert!(e.is_unreachable());

    // Everything answered is logged with what was injected (the delayed call was
    // abandoned by the client before an answer); the request is still answerable.
    let log = sim.request_log();
    assert_eq!(log.iter().filter(|e| e.injected.is_some()).count(), 5);
    assert!(
        log.iter().any(|e| e.status.is_none()),
        "dropped call logged without a status"
    );
    sim.clear_failures();
    let r = api.get_authentication_request_by_id(&r.id).await.unwrap();
    assert!(r.pending);
}

#[tokio::test]
async fn transport_failures() {
    // TLS: a client that does not trust the simulator's CA.
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let untrusting = ToopherApi::builder(sim.consumer_key(), sim.consumer_secret())
        .base_url(sim.base_url())
        .build()
        .unwrap();
    let e = untrusting.create_user("x", &[]).await.unwrap_err();
    assert_eq!(e.transport_kind(), Some(TransportKind::Tls), "{e:?}");
    assert!(e.is_unreachable());
    assert!(sim.request_log().is_empty(), "nothing reached the API");

    // Only the CA file, no system roots.
    let only_ca = common::client(&sim).system_roots(false).build().unwrap();
    only_ca.create_user("x", &[]).await.unwrap();

    // Connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = ToopherApi::builder("k", "s")
        .base_url(format!("http://127.0.0.1:{port}/v1"))
        .allow_http(true)
        .build()
        .unwrap();
    let e = refused.create_user("x", &[]).await.unwrap_err();
    assert_eq!(e.transport_kind(), Some(TransportKind::Connect), "{e:?}");
    assert!(e.is_unreachable() && !e.is_rejection());
}

#[tokio::test]
async fn plain_http_only_when_allowed() {
    let sim = Simulator::start(SimOptions::http()).await.unwrap();
    assert!(sim.ca_file().is_none());
    let e = ToopherApi::builder(sim.consumer_key(), sim.consumer_secret())
        .base_url(sim.base_url())
        .build()
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Local);
    let api = common::client(&sim).build().unwrap();
    api.create_user("plain", &[]).await.unwrap();
    assert_eq!(sim.request_log().len(), 1);
}

#[tokio::test]
async fn answers_that_do_not_parse_are_never_grants() {
    let (sim, api) = https().await;
    sim.create_paired_user("a").unwrap();
    let r1 = api
        .authenticate("a", &AuthenticateOptions::new())
        .await
        .unwrap();
    let r2 = api
        .authenticate("a", &AuthenticateOptions::new())
        .await
        .unwrap();
    sim.grant(&r2.id).unwrap();
    let granted_other = api
        .get(&format!("/authentication_requests/{}", r2.id), &[])
        .await
        .unwrap()
        .to_string();
    let bad_bodies = [
        // A granted answer for another request.
        granted_other.clone(),
        // `granted` as a string, `pending` missing, the whole object missing.
        granted_other.replace("\"granted\":true", "\"granted\":\"true\""),
        granted_other.replace("\"pending\":false,", ""),
        "{}".to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
    ];
    for body in bad_bodies {
        sim.inject_failure(
            FailureRule::new(
                "/authentication_requests/*",
                Failure::Respond {
                    status: 200,
                    body: body.clone(),
                },
            )
            .times(1),
        );
        let e = api
            .get_authentication_request_by_id(&r1.id)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidResponse(_)), "{body}: {e:?}");
        assert_eq!(e.class(), ErrorClass::InvalidResponse);
    }
    // The real answer is still pending.
    assert!(
        api.get_authentication_request_by_id(&r1.id)
            .await
            .unwrap()
            .pending
    );

    // A QR image that is not a PNG.
    let p = api.pair("b", None, &[]).await.unwrap();
    sim.inject_failure(
        FailureRule::new(
            "/qr/pairings/*",
            Failure::Respond {
                status: 200,
                body: "{}".into(),
            },
        )
        .times(1),
    );
    assert!(matches!(
        api.get_pairing_qr_code_image(&p.id).await,
        Err(Error::InvalidResponse(_))
    ));
}

#[tokio::test]
async fn errors_do_not_leak_secrets() {
    let (sim, _) = https().await;
    let secret = "very-secret-value-123";
    let api = common::client(&sim).build().unwrap();
    let wrong = ToopherApi::builder(sim.consumer_key(), secret)
        .base_url(sim.base_url())
        .ca_file(sim.ca_file().unwrap())
        .build()
        .unwrap();
    let e = wrong
        .authenticate("x", &AuthenticateOptions::new().otp("987654"))
        .await
        .unwrap_err();
    for text in [
        format!("{e}"),
        format!("{e:?}"),
        format!("{wrong:?}"),
        format!("{api:?}"),
    ] {
        assert!(
            !text.contains(secret)
                && !text.contains(sim.consumer_secret())
                && !text.contains("987654"),
            "{text}"
        );
    }
    assert!(!format!("{sim:?}").contains(sim.consumer_secret()));
}
