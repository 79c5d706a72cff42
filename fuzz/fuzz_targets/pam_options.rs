//! The module's option parser, over any PAM line (split on whitespace as libpam does).
//! Properties: what it accepts is within bounds, and it fails closed: `failmode=safe` is
//! the only way to get the safe failmode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_toopher::options::{Failmode, MAX_PROMPTS, MAX_TIMEOUT_SECS, Options};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = line.split_ascii_whitespace().collect();
    let parsed = Options::parse(args.iter().copied());
    assert_eq!(
        parsed,
        Options::parse(args.iter().copied()),
        "deterministic"
    );
    let Ok(o) = parsed else {
        return;
    };
    assert!((1..=MAX_PROMPTS).contains(&o.prompts));
    assert!((1..=MAX_TIMEOUT_SECS).contains(&o.timeout.as_secs()));
    assert_eq!(o.timeout.subsec_nanos(), 0);
    assert!(o.socket.is_absolute());
    if o.failmode == Failmode::Safe {
        assert_eq!(
            args.iter().rev().find(|a| a.starts_with("failmode=")),
            Some(&"failmode=safe")
        );
    }
    if o.debug {
        assert!(args.contains(&"debug"));
    }
    if o.autopush {
        assert!(args.contains(&"autopush"));
    }
});
