//! Validation of Toopher iframe postbacks (`iframe.rs`), over any form data. The input is
//! taken as `name=value&...` fields and used twice: as sent (any signature, most likely
//! refused), and signed with the right secret so validation reaches the resource.
//! Properties: a correctly signed postback never fails on its signature, and the form-
//! encoded and the field-list forms agree; a postback with a wrong signature, a changed
//! field or another secret is never valid; an error postback is never a grant; a grant is
//! a settled, granted authentication request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::Arc;
use toopher_api::{
    Error, FixedClock, PostbackError, PostbackResource, ToopherIframe, postback_signature,
};

const SECRET: &str = "hijklmnop";
const NOW: u64 = 1000;

fn iframe(secret: &str) -> ToopherIframe {
    ToopherIframe::new("abcdefg", secret).with_clock(Arc::new(FixedClock(NOW)))
}

/// Every byte percent-encoded: what `validate_postback_urlencoded` must decode back.
fn form_encode(fields: &[(String, String)]) -> String {
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn check_valid(fields: &[(String, String)], r: &Result<PostbackResource, Error>) {
    let Ok(resource) = r else {
        return;
    };
    assert!(
        fields.iter().all(|(k, _)| k != "error_code"),
        "an error postback is never valid"
    );
    let ts = fields
        .iter()
        .find(|(k, _)| k == "timestamp")
        .expect("a timestamp");
    let ts: i64 =
        ts.1.trim()
            .parse()
            .expect("a valid postback has a numeric timestamp");
    assert!((NOW as i64).saturating_sub(ts) < 300, "within the TTL");
    if let PostbackResource::AuthenticationRequest(req) = resource {
        let flag = |name: &str| fields.iter().any(|(k, v)| k == name && v == "true");
        assert_eq!(req.pending, flag("pending"));
        assert_eq!(req.granted, flag("granted"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(form) = std::str::from_utf8(rest) else {
        return;
    };
    let token = (mode & 1 == 1).then_some("s9s7vsb");
    let ifr = iframe(SECRET);

    // As sent.
    if let Ok(PostbackResource::AuthenticationRequest(r)) =
        ifr.validate_postback_urlencoded(form, token)
    {
        let _ = r.is_granted();
    }

    // Signed with the right secret.
    let mut fields: Vec<(String, String)> = form
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .filter(|(k, _)| k != "toopher_sig")
        .collect();
    let map: BTreeMap<String, String> = fields.iter().cloned().collect();
    let duplicates = map.len() != fields.len();
    let sig = postback_signature(SECRET, &map);
    fields.push(("toopher_sig".into(), sig.clone()));

    let signed = ifr.validate_postback(&fields, token);
    assert!(
        !matches!(
            signed,
            Err(Error::Postback(PostbackError::SignatureMismatch))
        ),
        "a correctly signed postback failed on its signature"
    );
    if duplicates {
        assert!(signed.is_err(), "duplicate fields are refused");
    }
    check_valid(&fields, &signed);
    let granted = ifr.is_authentication_granted(&fields, token);
    assert_eq!(
        granted,
        matches!(&signed, Ok(PostbackResource::AuthenticationRequest(r)) if r.is_granted())
    );
    if granted {
        assert!(fields.iter().any(|(k, v)| k == "granted" && v == "true"));
        assert!(fields.iter().any(|(k, v)| k == "pending" && v != "true"));
    }
    let encoded = ifr.validate_postback_urlencoded(&form_encode(&fields), token);
    assert_eq!(
        format!("{encoded:?}"),
        format!("{signed:?}"),
        "both forms agree"
    );

    // Tampered: never valid.
    let mut bad_sig = fields.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last].1 = if sig.starts_with('A') {
        sig.replacen('A', "B", 1)
    } else {
        format!("A{}", &sig[1..])
    };
    assert!(
        ifr.validate_postback(&bad_sig, token).is_err(),
        "a wrong signature was accepted"
    );
    if let Some(i) = fields.iter().position(|(k, _)| k != "toopher_sig") {
        let mut changed = fields.clone();
        changed[i].1.push('x');
        assert!(
            ifr.validate_postback(&changed, token).is_err(),
            "a changed field was accepted"
        );
    }
    assert!(
        iframe("another secret")
            .validate_postback(&fields, token)
            .is_err(),
        "another consumer's signature was accepted"
    );
});
