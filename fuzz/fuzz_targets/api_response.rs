//! The Toopher API client's reading of an HTTP answer: status and body (`json_from_response`,
//! error bodies included), then the typed objects (`models.rs`), and `Retry-After`.
//! Properties: an error status is never a value, a 2xx JSON body always is; an error
//! answer is classified from its status; a parsed object is valid (non-empty ids), round-
//! trips through JSON, and a request is granted only when settled and granted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::time::Duration;
use toopher_api::fuzzing;
use toopher_api::{Error, ErrorClass};

fn check_error(e: &Error, status: u16) {
    let _ = (e.to_string(), format!("{e:?}"));
    assert!(!(e.is_unreachable() && e.is_rejection()));
    if let Some(api) = e.api_error() {
        assert_eq!(api.status, Some(status));
        assert!(
            api.message.chars().count() <= 1025,
            "error messages are bounded"
        );
        let class = e.class();
        match status {
            429 => assert_eq!(class, ErrorClass::RateLimited),
            500.. => assert_eq!(class, ErrorClass::ServerError),
            _ => assert_eq!(class, ErrorClass::Rejected),
        }
    }
}

fn objects(v: &Value) {
    if let Ok(r) = fuzzing::authentication_request(v.clone()) {
        assert!(!r.id.is_empty() && !r.user.id.is_empty() && !r.terminal.id.is_empty());
        assert!(!r.action.id.is_empty() && !r.terminal.user.id.is_empty());
        assert!(!(r.is_granted() && r.is_denied()));
        if r.is_granted() {
            assert!(!r.pending && r.granted);
        }
        let again = serde_json::to_value(&r).expect("serialises");
        assert_eq!(
            fuzzing::authentication_request(again).ok().as_ref(),
            Some(&r)
        );
    }
    if let Ok(p) = fuzzing::pairing(v.clone()) {
        assert!(!p.id.is_empty() && !p.user.id.is_empty());
        let again = serde_json::to_value(&p).expect("serialises");
        assert_eq!(fuzzing::pairing(again).ok().as_ref(), Some(&p));
    }
    if let Ok(u) = fuzzing::user(v.clone()) {
        assert!(!u.id.is_empty());
        let again = serde_json::to_value(&u).expect("serialises");
        assert_eq!(fuzzing::user(again).ok().as_ref(), Some(&u));
    }
    if let Ok(t) = fuzzing::user_terminal(v.clone()) {
        assert!(!t.id.is_empty() && !t.user.id.is_empty());
        let again = serde_json::to_value(&t).expect("serialises");
        assert_eq!(fuzzing::user_terminal(again).ok().as_ref(), Some(&t));
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (head, body) = data.split_at(3);
    // HTTP statuses are three digits; weight the interesting ones.
    let status = match head[0] % 4 {
        0 => 200,
        1 => 400 + u16::from(head[1]) % 32,
        2 => [401, 403, 404, 409, 429, 500, 502, 503][usize::from(head[1] % 8)],
        _ => 100 + u16::from_be_bytes([head[1], head[2]]) % 900,
    };
    let retry_after = (head[2] & 1 == 1).then(|| Duration::from_secs(u64::from(head[2])));

    match fuzzing::answer(status, body, retry_after) {
        Ok(v) => {
            assert!(
                (200..300).contains(&status),
                "a value only from a 2xx answer"
            );
            objects(&v);
            // A list of users, as `get_user_by_name` reads it.
            if let Value::Array(items) = &v {
                items.iter().take(4).for_each(objects);
            }
        }
        Err(e) => {
            if status >= 400 {
                assert!(matches!(e, Error::Api(_) | Error::NotJson { .. }));
                assert_eq!(e.retry_after(), retry_after);
            }
            if (200..300).contains(&status) {
                assert!(
                    matches!(e, Error::NotJson { .. }),
                    "only a body that is not JSON"
                );
                assert!(serde_json::from_slice::<Value>(body).is_err());
            }
            check_error(&e, status);
        }
    }
    // The body as a Retry-After header value.
    if let Some(d) = fuzzing::retry_after(body) {
        let text = std::str::from_utf8(body).expect("a parsed header is text");
        assert_eq!(Ok(d.as_secs()), text.trim().parse::<u64>());
    }
});
