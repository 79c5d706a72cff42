//! The lean codec against serde's: the same bytes for every request, the same answer
//! (or the same refusal) for every body.

use super::{decode_response, encode_request};
use crate::{
    AllowReason, DenyReason, ErrorKind, FailureNotice, FrameError, LoginContext, LoginRequest,
    LoginResponse, Method, RegistrationNext, RegistrationStatus, Secret, decode, encode,
};

/// Both codecs read `body` alike: the same answer, the same other version, or both refuse.
fn agree(body: &[u8]) {
    let serde = decode::<LoginResponse>(body);
    let lean = decode_response(body);
    let shown = String::from_utf8_lossy(body);
    match (&serde, &lean) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{shown}"),
        (Err(FrameError::Version(a)), Err(FrameError::Version(b))) => assert_eq!(a, b, "{shown}"),
        (Err(FrameError::Malformed { .. }), Err(FrameError::Malformed { .. })) => {}
        _ => panic!("serde {serde:?}, lean {lean:?}: {shown}"),
    }
}

fn agree_msg(msg: &str) {
    agree(format!(r#"{{"v":1,"msg":{msg}}}"#).as_bytes());
}

/// Text with everything serde_json escapes, and what it passes through as is.
const TRICKY: &str = "q\"b\\s/\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}é東😀\u{202e}";

fn requests() -> Vec<LoginRequest> {
    let ctx = |rhost: Option<&str>, autopush, notify| LoginContext {
        user: format!("alice{TRICKY}"),
        service: "sshd".into(),
        rhost: rhost.map(str::to_string),
        tty: Some("pts/1".into()),
        ruser: None,
        autopush,
        notify,
    };
    vec![
        LoginRequest::Begin(ctx(None, false, true)),
        LoginRequest::Begin(ctx(Some(TRICKY), true, false)),
        LoginRequest::Otp {
            code: Secret::new("123456"),
        },
        LoginRequest::Otp {
            code: Secret::new(TRICKY),
        },
        LoginRequest::Push,
        LoginRequest::Wait { timeout_ms: 0 },
        LoginRequest::Wait {
            timeout_ms: u32::MAX,
        },
        LoginRequest::Cancel,
        LoginRequest::RegistrationResponse {
            code: Secret::new(""),
        },
        LoginRequest::PairPhrase {
            phrase: TRICKY.into(),
        },
        LoginRequest::GraceToken,
        LoginRequest::BindSession {
            user: "bob".into(),
            token: Secret::new(TRICKY),
        },
    ]
}

#[test]
fn every_request_is_written_byte_for_byte_as_serde_writes_it() {
    for req in requests() {
        let lean = encode_request(&req).unwrap();
        let serde = encode(&req).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&lean),
            String::from_utf8_lossy(&serde)
        );
        assert_eq!(*lean, *serde);
    }
    // Every control character, one at a time.
    for c in (0u8..0x20).chain([b'"', b'\\', 0x7f]) {
        let req = LoginRequest::PairPhrase {
            phrase: char::from(c).to_string(),
        };
        assert_eq!(
            *encode_request(&req).unwrap(),
            *encode(&req).unwrap(),
            "{c}"
        );
    }
}

#[test]
fn an_oversized_request_is_refused_as_before() {
    let req = LoginRequest::PairPhrase {
        phrase: "\u{1}".repeat(crate::MAX_FRAME_LEN / 3),
    };
    assert!(matches!(encode(&req), Err(FrameError::TooLarge(_))));
    assert!(matches!(encode_request(&req), Err(FrameError::TooLarge(_))));
    // A text far over the limit (a remote user's 1 MB user name) is refused before
    // anything is allocated for it.
    let huge = LoginRequest::PairPhrase {
        phrase: "a".repeat(1 << 20),
    };
    assert!(matches!(encode_request(&huge), Err(FrameError::TooLarge(n)) if n >= 1 << 20));
}

fn answers() -> Vec<LoginResponse> {
    let notice = FailureNotice {
        failures: 3,
        rhosts: vec!["192.0.2.7".into(), TRICKY.into()],
        more_rhosts: true,
        last_at: Some(u64::MAX),
    };
    let mut all = vec![
        LoginResponse::Challenge {
            methods: vec![
                Method::Otp,
                Method::RecoveryCode,
                Method::Push,
                Method::Unknown,
            ],
            push_pending: true,
        },
        LoginResponse::Register {
            registration_code: "123456".into(),
            expires_in_secs: u32::MAX,
        },
        LoginResponse::granted(Method::Otp),
        LoginResponse::Granted {
            method: Method::Push,
            notice: Some(notice),
        },
        LoginResponse::Denied {
            reason: DenyReason::PushDenied,
            message: Some(TRICKY.into()),
        },
        LoginResponse::Pending,
        LoginResponse::Unavailable {
            detail: TRICKY.into(),
        },
        LoginResponse::GraceToken {
            token: Secret::new(TRICKY),
        },
        LoginResponse::Bound { session: 0 },
    ];
    for reason in [
        AllowReason::NotEnrolled,
        AllowReason::Exempt,
        AllowReason::Failmode,
    ] {
        all.push(LoginResponse::Allow { reason });
    }
    for reason in [
        DenyReason::WrongCode,
        DenyReason::RateLimited,
        DenyReason::NotEnrolled,
        DenyReason::PushDenied,
        DenyReason::PushTimeout,
        DenyReason::UserDisabled,
        DenyReason::Policy,
        DenyReason::Other,
    ] {
        all.push(LoginResponse::denied(reason));
    }
    for kind in [
        ErrorKind::BadRequest,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unsupported,
        ErrorKind::Version,
        ErrorKind::TooLarge,
        ErrorKind::Busy,
        ErrorKind::Internal,
        ErrorKind::Other,
    ] {
        all.push(LoginResponse::error(kind, TRICKY));
    }
    let nexts = [
        RegistrationNext::Retry,
        RegistrationNext::StartOver {
            registration_code: "654321".into(),
            expires_in_secs: 600,
        },
        RegistrationNext::EnrollTotp {
            qr_text: Secret::new(TRICKY),
            secret: Secret::new("S"),
            otpauth_uri: Secret::new("U"),
            recovery_codes: vec![Secret::new("r1"), Secret::new("r2")],
        },
        RegistrationNext::PairPhrase,
    ];
    for status in [
        RegistrationStatus::Registered,
        RegistrationStatus::WrongResponse,
        RegistrationStatus::NotApproved,
        RegistrationStatus::Failed,
    ] {
        for next in nexts.clone() {
            all.push(LoginResponse::Registration {
                status,
                message: "m".into(),
                next,
            });
        }
    }
    all
}

#[test]
fn every_answer_serde_writes_is_read_back_alike() {
    for answer in answers() {
        let frame = encode(&answer).unwrap();
        assert_eq!(decode_response(&frame[4..]).unwrap(), answer);
        agree(&frame[4..]);
    }
}

/// The answers the pinned wire-format tests (message.rs) list, as their text.
#[test]
fn the_pinned_answers_read_alike() {
    for json in [
        r#"{"type":"allow","reason":"failmode"}"#,
        r#"{"type":"challenge","methods":["otp","recovery_code","push"],"push_pending":true}"#,
        r#"{"type":"register","registration_code":"123456","expires_in_secs":600}"#,
        r#"{"type":"granted","method":"otp"}"#,
        r#"{"type":"granted","method":"push","notice":{"failures":2,"rhosts":["192.0.2.7"],"more_rhosts":false,"last_at":5}}"#,
        r#"{"type":"granted","method":"otp","notice":{"failures":2}}"#,
        r#"{"type":"denied","reason":"push_denied","message":"no"}"#,
        r#"{"type":"denied","reason":"wrong_code","message":null}"#,
        r#"{"type":"denied","reason":"something_new"}"#,
        r#"{"type":"pending"}"#,
        r#"{"type":"unavailable","detail":"down"}"#,
        r#"{"type":"registration","status":"WrongResponse","message":"m","next":"retry"}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":"start_over","registration_code":"654321","expires_in_secs":600}"#,
        r#"{"type":"registration","status":"Registered","message":"m","next":"enroll_totp","qr_text":"q","secret":"S","otpauth_uri":"U","recovery_codes":["r"]}"#,
        r#"{"type":"registration","status":"Registered","message":"m","next":"pair_phrase"}"#,
        r#"{"type":"error","kind":"forbidden","message":"no"}"#,
        r#"{"type":"error","kind":"busy","message":"busy"}"#,
        r#"{"type":"grace_token","token":"t"}"#,
        r#"{"type":"bound","session":7}"#,
        // Administrative answers: neither codec reads them as a login's.
        r#"{"type":"activated","user":"bob"}"#,
        r#"{"type":"removed","user":"a","existed":true,"user":"b"}"#,
        r#"{"type":5}"#,
        r#"{"type":0}"#,
    ] {
        agree_msg(json);
    }
}

/// Values of every JSON type and the edges of serde_json's numbers.
const ODD: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "7",
    "-1",
    "1.5",
    "1e2",
    "1E+2",
    "1e-400",
    "1e400",
    "-1e400",
    "0e999999999999",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "17976931348623157e292",
    "179769313486231580000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "0.000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "01",
    "1.",
    ".5",
    "1e",
    "+1",
    "\"\"",
    "\"otp\"",
    "\"push_denied\"",
    "\"Failed\"",
    "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\u00e9\\ud83d\\ude00\"",
    "\"\\ud800\"",
    "\"\\udc00\"",
    "\"\\ud800\\u0041\"",
    "\"\\ud800x\"",
    "\"\\x\"",
    "\"\\u12\"",
    "\"\u{1}\"",
    "\"é\"",
    "[]",
    "[1]",
    "[\"otp\"]",
    "[\"otp\",\"push\"]",
    "[1,]",
    "{}",
    "{\"otp\":null}",
    "{\"otp\":{}}",
    "{\"otp\":[]}",
    "{\"otp\":1}",
    "{\"otp\":{\"x\":1}}",
    "{\"telepathy\":null}",
    "{\"Failed\":null}",
    "{\"failures\":1}",
    "{\"a\":1,\"a\":2}",
    "{\"a\":1,}",
    "{1:2}",
    "nul",
    "tru",
    "",
];

fn fields_of(json: &str) -> Vec<(String, String)> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
    map.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

fn object(fields: &[(String, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// Every answer with each field missing, given twice, of every odd value, and with an
/// unknown field of every odd value.
#[test]
fn mutated_answers_read_alike() {
    let mut bases: Vec<String> = answers()
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    bases.push(r#"{"type":"granted","method":"otp","notice":{"failures":2,"rhosts":["h"],"more_rhosts":true,"last_at":null}}"#.into());
    for base in bases {
        let fields = fields_of(&base);
        agree_msg(&object(&fields));
        for i in 0..fields.len() {
            let mut f = fields.clone();
            f.remove(i);
            agree_msg(&object(&f));
            let mut f = fields.clone();
            f.push(fields[i].clone());
            agree_msg(&object(&f));
            for odd in ODD {
                let mut f = fields.clone();
                f[i].1 = odd.to_string();
                agree_msg(&object(&f));
            }
        }
        for odd in ODD {
            let mut f = fields.clone();
            f.push(("extra".into(), odd.to_string()));
            agree_msg(&object(&f));
            f.insert(0, ("notice".into(), odd.to_string()));
            agree_msg(&object(&f));
        }
    }
}

/// serde also reads a struct from an array of its fields in order, and a unit enum from
/// a one-entry object: quirks the lean codec keeps so the two never differ.
#[test]
fn serde_quirks_read_alike() {
    for msg in [
        r#"["pending"]"#,
        r#"["pending",1]"#,
        r#"[]"#,
        r#"[5]"#,
        r#"["allow","exempt"]"#,
        r#"["allow","exempt",1]"#,
        r#"["allow"]"#,
        r#"["denied","wrong_code"]"#,
        r#"["denied","wrong_code",null]"#,
        r#"["denied","wrong_code","x"]"#,
        r#"["granted","otp",[2]]"#,
        r#"["granted","otp",[2,["h"],true,9]]"#,
        r#"["granted","otp",[2,["h"],true,9,1]]"#,
        r#"["error",{"busy":null},"m"]"#,
        r#"["registration","Failed","m"]"#,
        r#"["bound",4294967295]"#,
        r#"{"type":"allow","reason":{"exempt":null}}"#,
        r#"{"type":"allow","reason":{"exempt":{}}}"#,
        r#"{"type":"allow","reason":{"exempt":[]}}"#,
        r#"{"type":"allow","reason":{"exempt":null,"policy":null}}"#,
        r#"{"reason":"exempt","type":"allow"}"#,
        r#"{"type":"allow","reason":"exempt","type":"allow"}"#,
        r#"{"typ\u0065":"allow","r\u0065ason":"\u0065xempt"}"#,
        r#"{"type":"pending","anything":[{"a":[1,2,{"b":null}]}]}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":1,"registration_code":"1","expires_in_secs":2}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":0}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":3}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":4}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":-1}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":"retry","next":"retry"}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":"start_over","registration_code":"1","expires_in_secs":2,"registration_code":"1"}"#,
        r#"{"type":"registration","status":"Failed","message":"m","next":"enroll_totp","qr_text":"q","secret":"S","otpauth_uri":"U","recovery_codes":[1]}"#,
        r#"{"type":"registration","status":{"Failed":null},"message":"m","next":"retry"}"#,
        r#"{"type":"challenge","methods":["otp",{"push":null},"telepathy",{"x":{}}],"push_pending":false}"#,
        r#"{"type":"challenge","methods":[{"push":1}],"push_pending":false}"#,
        r#""pending""#,
        r#"5"#,
        r#"null"#,
    ] {
        agree_msg(msg);
    }
}

#[test]
fn envelopes_read_alike() {
    let pending = r#"{"type":"pending"}"#;
    for body in [
        format!(r#"{{"v":1,"msg":{pending}}}"#),
        format!(r#"{{"msg":{pending},"v":1}}"#),
        format!(" \t\r\n{{ \"v\" : 1 , \"msg\" : {pending} }} \n"),
        format!(r#"{{"v":2,"msg":{pending}}}"#),
        r#"{"v":2,"msg":"not a message"}"#.to_string(),
        r#"{"v":2,"msg":{"type":"pending"}"#.to_string(),
        format!(r#"{{"v":1.0,"msg":{pending}}}"#),
        format!(r#"{{"v":-1,"msg":{pending}}}"#),
        format!(r#"{{"v":65536,"msg":{pending}}}"#),
        format!(r#"{{"v":"1","msg":{pending}}}"#),
        format!(r#"{{"v":1,"v":1,"msg":{pending}}}"#),
        format!(r#"{{"v":1,"msg":{pending},"msg":{pending}}}"#),
        format!(r#"{{"msg":{pending}}}"#),
        r#"{"v":1}"#.to_string(),
        format!(r#"{{"v":1,"msg":{pending}}} x"#),
        format!(r#"{{"v":1,"msg":{pending}}}{{}}"#),
        format!(r#"{{"v":1,"msg":{pending},}}"#),
        // Fields the envelope does not know are skipped without a look inside strings.
        format!(r#"{{"v":1,"msg":{pending},"x":"\ud800","y":"\udc00\u0041"}}"#),
        format!(r#"{{"v":1,"x":[1e400,{{"a":-0.5e-3}}],"msg":{pending}}}"#),
        format!(r#"{{"v":1,"x":01,"msg":{pending}}}"#),
        format!(r#"{{"v":1,"x":"\q","msg":{pending}}}"#),
        format!(r#"{{"v":1,"x":[1,],"msg":{pending}}}"#),
        format!(r#"{{"v":1,"x":{{"a" 1}},"msg":{pending}}}"#),
        format!(r#"{{"v":1,"\ud800":1,"msg":{pending}}}"#),
        "[1]".into(),
        "[2]".into(),
        " [ 3 ] ".into(),
        "[2,1]".into(),
        "[]".into(),
        "[1.5]".into(),
        "{}".into(),
        "".into(),
        " ".into(),
        "null".into(),
        "{".into(),
        r#"{"v":1,"msg":{"type":"pending"}"#.into(),
    ] {
        agree(body.as_bytes());
    }
    // Bytes that are not UTF-8: skipped in an unknown envelope field, refused in a message.
    let mut raw = br#"{"v":1,"x":""#.to_vec();
    raw.extend_from_slice(&[0xff, 0xc0, 0x80]);
    raw.extend_from_slice(br#"","msg":{"type":"pending"}}"#);
    agree(&raw);
    let mut raw = br#"{"v":1,"msg":{"type":"error","kind":"busy","message":""#.to_vec();
    raw.extend_from_slice(&[0xff]);
    raw.extend_from_slice(br#""}}"#);
    agree(&raw);
    let mut raw = br#"{"v":1,"msg":{"type":"error","kind":"busy","message":""#.to_vec();
    raw.extend_from_slice("é東😀".as_bytes());
    raw.extend_from_slice(br#""}}"#);
    agree(&raw);
    assert!(decode_response(&raw).is_ok());
}

/// serde_json's recursion limit holds inside the message; skipped envelope fields may
/// nest deeper.
#[test]
fn nesting_reads_alike() {
    for n in [1, 100, 124, 125, 126, 127, 128, 200] {
        let deep = format!("{}{}", "[".repeat(n), "]".repeat(n));
        agree_msg(&format!(r#"{{"type":"pending","x":{deep}}}"#));
        let objs = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        agree_msg(&format!(r#"{{"type":"pending","x":{objs}}}"#));
        agree(format!(r#"{{"v":1,"x":{deep},"msg":{{"type":"pending"}}}}"#).as_bytes());
    }
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    agree(format!(r#"{{"v":1,"x":{deep},"msg":{{"type":"pending"}}}}"#).as_bytes());
    agree_msg(&format!(r#"{{"type":"pending","x":{deep}}}"#));
}

#[test]
fn truncated_and_damaged_bodies_read_alike() {
    let frame = encode(&LoginResponse::Granted {
        method: Method::Push,
        notice: Some(FailureNotice {
            failures: 2,
            rhosts: vec![TRICKY.into()],
            more_rhosts: false,
            last_at: Some(5),
        }),
    })
    .unwrap();
    let body = &frame[4..];
    for i in 0..body.len() {
        agree(&body[..i]);
        let mut damaged = body.to_vec();
        damaged[i] ^= 0x20;
        agree(&damaged);
        let mut damaged = body.to_vec();
        damaged.remove(i);
        agree(&damaged);
    }
}

#[test]
fn a_refusal_names_where_the_body_went_wrong_not_what_it_said() {
    let err =
        decode_response(b"{\"v\":1,\n\"msg\":{\"type\":\"otp\",\"code\":123456}}").unwrap_err();
    assert!(
        matches!(err, FrameError::Malformed { line: 2, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("123456"));
}
