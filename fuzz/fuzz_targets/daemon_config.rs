//! toopherd's configuration parser, over any text. Properties: what it accepts is within
//! the documented bounds, and the defaults fail closed unless the text says otherwise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use toopherd::config::{Availability, Config, Failmode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = match Config::parse(text) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.is_empty(), "an error says why");
            return;
        }
    };
    assert!(c.socket.path().is_absolute());
    assert!(c.state_dir.path().is_absolute());
    assert!(c.database_path().starts_with(c.state_dir.path()));
    assert!((60..=86_400).contains(&c.enrollment_ttl.0));
    assert!((10..=86_400).contains(&c.registration_ttl.0));
    assert!((1..=1000).contains(&c.rate_limit.max_failures.0));
    assert!((10..=86_400).contains(&c.rate_limit.window.0));
    for label in [&c.issuer, &c.admin_group].into_iter().flatten() {
        assert!(!label.0.is_empty() && label.0.len() <= 64);
        assert!(!label.0.chars().any(|ch| ch.is_control() || ch == ':'));
    }
    if c.failmode == Failmode::Safe {
        assert!(text.contains("safe"), "failmode=safe only when asked for");
    }
    if c.availability == Availability::Available {
        assert!(
            text.contains("available"),
            "availability=available only when asked for"
        );
    }
    let t = &c.toopher;
    assert!(t.timeout.0 >= Duration::from_millis(100) && t.timeout.0 <= Duration::from_secs(20));
    assert!(
        t.poll_interval.0 >= Duration::from_millis(50)
            && t.poll_interval.0 <= Duration::from_secs(30)
    );
    assert!(
        t.push_timeout.0 >= Duration::from_secs(1) && t.push_timeout.0 <= Duration::from_secs(600)
    );
    assert!(t.base_url.0.starts_with("https://") || t.base_url.0.starts_with("http://"));
    assert!(t.user_name_format.0.contains("{user}"));
    assert!(t.toopher_user_name("alice").contains("alice"));
    if let Some(p) = &t.credentials_file {
        assert!(p.path().is_absolute());
    }
    for service in ["sshd", "sudo", "login"] {
        let _ = t.automation_allowed_for(service);
        assert!(!t.action_for(service).is_empty());
    }
    if !t.services.contains_key("sudo") {
        assert!(
            !t.automation_allowed_for("sudo"),
            "no automation for sudo by default"
        );
    }
});
