//! HTTP(S) plumbing: listener, TLS, OAuth verification, failure injection, the
//! `/_sim` control routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, watch};

use crate::state::{Reply, State};
use crate::util;
use crate::{
    Answer, ControlError, Core, Failure, FailureRule, LogEntry, NewUser, Shared, SimHandle,
    SimOptions,
};

const MAX_BODY: usize = 1024 * 1024;

/// The error that makes hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the simulator")
    }
}

impl std::error::Error for DropConnection {}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn tls_acceptor(
    hostnames: &[String],
    ca_path: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(io_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "toopher-sim test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(io_err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(io_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(hostnames.iter().cloned());
    let mut leaf = CertificateParams::new(names).map_err(io_err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "toopher-sim");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate().map_err(io_err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(io_err)?;

    if let Some(dir) = ca_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(ca_path, ca_cert.pem())?;

    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
        tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
    );
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io_err)?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)
        .map_err(io_err)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

pub(crate) async fn start(opts: SimOptions) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let scheme = if opts.tls { "https" } else { "http" };
    let base_url = format!("{scheme}://{host}:{}/v1", addr.port());

    let (acceptor, ca_file, ca_dir_created) = if opts.tls {
        let (path, created) = match &opts.ca_file {
            Some(p) => (p.clone(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "toopher-sim-{}-{}",
                    std::process::id(),
                    util::random_hex(4)
                ));
                (dir.join("ca.pem"), Some(dir))
            }
        };
        let acc = tls_acceptor(&opts.hostnames, &path)?;
        (Some(acc), Some(path), created)
    } else {
        (None, None, None)
    };

    let mut state = State {
        auto_answer: opts.auto_answer.clone(),
        request_ttl: opts.request_ttl,
        string_reason_codes: opts.string_reason_codes,
        base_url: base_url.clone(),
        ..State::default()
    };
    state.base_url = base_url.clone();
    let (events, _) = broadcast::channel(256);
    let shared = Arc::new(Shared {
        core: Mutex::new(Core {
            state,
            nonces: HashMap::new(),
            failures: Vec::new(),
            log: Vec::new(),
            seq: 0,
        }),
        consumer_key: opts
            .consumer_key
            .clone()
            .unwrap_or_else(|| format!("simkey{}", util::random_hex(8))),
        consumer_secret: opts
            .consumer_secret
            .clone()
            .unwrap_or_else(|| util::random_hex(20)),
        timestamp_window: opts.timestamp_window.as_secs(),
        events,
        notify: Notify::new(),
        base_url,
    });

    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let accept_shared = Arc::clone(&shared);
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown_rx.changed() => break,
                accepted = listener.accept() => {
                    let Ok((tcp, _peer)) = accepted else { continue };
                    let shared = Arc::clone(&accept_shared);
                    let acceptor = acceptor.clone();
                    conns.spawn(async move {
                        match acceptor {
                            Some(acc) => {
                                if let Ok(tls) = acc.accept(tcp).await {
                                    serve(shared, TokioIo::new(tls), "https").await;
                                }
                            }
                            None => serve(shared, TokioIo::new(tcp), "http").await,
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.abort_all();
    });

    Ok(SimHandle {
        shared,
        addr,
        ca_file,
        ca_dir_created,
        shutdown,
        tls: opts.tls,
    })
}

async fn serve<I>(shared: Arc<Shared>, io: I, scheme: &'static str)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { handle(shared, req, scheme).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type);
    for (k, v) in &reply.headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn parse_form(s: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(s)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    scheme: &'static str,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(respond(Reply::error(413, 413, "Request body too large."))),
    };

    if let Some(rest) = path.strip_prefix("/_sim") {
        return Ok(respond(
            control(&shared, &method, rest, &query, &body).await,
        ));
    }
    let Some(api_path) = path.strip_prefix("/v1").filter(|p| p.starts_with('/')) else {
        return Ok(respond(Reply::error(404, 404, "No such endpoint.")));
    };
    let api_path = api_path.to_owned();

    let mut params = parse_form(query.as_bytes());
    if is_form {
        params.extend(parse_form(&body));
    }
    let logged: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !k.starts_with("oauth_"))
        .map(|(k, v)| {
            let v = if k == "otp" {
                "<redacted>".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();

    // Injected failures come first (a broken service or proxy in front of it).
    let failure = {
        let mut core = shared.lock();
        let idx = core
            .failures
            .iter()
            .position(|r| r.matches(&method, &api_path));
        idx.map(|i| {
            let rule = core.failures[i].clone();
            if let Some(n) = core.failures[i].count.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    core.failures.remove(i);
                }
            }
            rule
        })
    };
    if let Some(rule) = &failure {
        let label = serde_json::to_string(&rule.failure).unwrap_or_default();
        let reply = match &rule.failure {
            Failure::Delay { ms } => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                None
            }
            Failure::Drop => {
                log(
                    &shared,
                    &method,
                    &api_path,
                    logged,
                    None,
                    false,
                    Some(label),
                );
                return Err(DropConnection);
            }
            Failure::Status {
                status,
                error_code,
                error_message,
            } => Some(Reply::error(
                *status,
                error_code.unwrap_or(i64::from(*status)),
                error_message.as_deref().unwrap_or("Simulated failure"),
            )),
            Failure::RateLimit { retry_after } => {
                let mut r = Reply::error(429, 429, "Rate limit exceeded.");
                r.headers.push(("retry-after", retry_after.to_string()));
                Some(r)
            }
            Failure::Respond { status, body } => Some(Reply {
                status: *status,
                body: body.clone().into_bytes(),
                content_type: "application/json",
                headers: Vec::new(),
            }),
            Failure::Malformed { status } => Some(Reply {
                status: *status,
                body: b"{\"id\": \"truncated".to_vec(),
                content_type: "application/json",
                headers: Vec::new(),
            }),
        };
        if let Some(reply) = reply {
            log(
                &shared,
                &method,
                &api_path,
                logged,
                Some(reply.status),
                false,
                Some(label),
            );
            return Ok(respond(reply));
        }
    }
    let injected = failure.map(|r| serde_json::to_string(&r.failure).unwrap_or_default());

    // OAuth.
    let mut host = host.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    if host.ends_with(default_port) {
        host.truncate(host.len() - default_port.len());
    }
    let base_uri = format!("{scheme}://{host}{path}");
    if verify_oauth(&shared, &method, &base_uri, &params, auth.as_deref()).is_err() {
        log(
            &shared,
            &method,
            &api_path,
            logged,
            Some(401),
            false,
            injected,
        );
        return Ok(respond(Reply::error(
            401,
            401,
            "Not a valid OAuth signed request",
        )));
    }
    let api_params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| !k.starts_with("oauth_"))
        .collect();
    let reply = {
        let mut core = shared.lock();
        let reply = core.state.api(&method, &api_path, &api_params);
        shared.flush_events(&mut core);
        reply
    };
    log(
        &shared,
        &method,
        &api_path,
        logged,
        Some(reply.status),
        true,
        injected,
    );
    Ok(respond(reply))
}

fn log(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    params: Vec<(String, String)>,
    status: Option<u16>,
    oauth_ok: bool,
    injected: Option<String>,
) {
    let mut core = shared.lock();
    core.seq += 1;
    let seq = core.seq;
    core.log.push(LogEntry {
        seq,
        method: method.to_owned(),
        path: path.to_owned(),
        params,
        status,
        oauth_ok,
        injected,
    });
    if core.log.len() > 10_000 {
        core.log.remove(0);
    }
}

/// Parses `OAuth k="v", k2="v2"` (values percent-decoded).
fn parse_auth_header(h: &str) -> Option<Vec<(String, String)>> {
    let h = h.trim();
    let (scheme, rest) = h.split_at(h.find(' ').unwrap_or(h.len()));
    if !scheme.eq_ignore_ascii_case("oauth") {
        return None;
    }
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
        out.push((util::percent_decode(k.trim())?, util::percent_decode(v)?));
    }
    Some(out)
}

/// Verifies the OAuth 1.0a HMAC-SHA1 signature (two-legged), independently of the
/// client crate's signer.
fn verify_oauth(
    shared: &Arc<Shared>,
    method: &str,
    base_uri: &str,
    params: &[(String, String)],
    auth: Option<&str>,
) -> Result<(), &'static str> {
    // Protocol parameters from the header, else from the query/body.
    type Pairs = Vec<(String, String)>;
    let (protocol, request_params): (Pairs, Pairs) = match auth {
        Some(h) => {
            let hp = parse_auth_header(h).ok_or("bad Authorization header")?;
            let hp: Vec<_> = hp.into_iter().filter(|(k, _)| k != "realm").collect();
            (hp, params.to_vec())
        }
        None => params
            .iter()
            .cloned()
            .partition(|(k, _)| k.starts_with("oauth_")),
    };
    let one = |name: &str| -> Result<String, &'static str> {
        let mut it = protocol.iter().filter(|(k, _)| k == name);
        let v = it
            .next()
            .map(|(_, v)| v.clone())
            .ok_or("missing oauth parameter")?;
        if it.next().is_some() {
            return Err("duplicate oauth parameter");
        }
        Ok(v)
    };
    let key = one("oauth_consumer_key")?;
    let sig = one("oauth_signature")?;
    let nonce = one("oauth_nonce")?;
    let ts: u64 = one("oauth_timestamp")?
        .parse()
        .map_err(|_| "bad timestamp")?;
    if one("oauth_signature_method")? != "HMAC-SHA1" {
        return Err("unsupported signature method");
    }
    if let Ok(v) = one("oauth_version")
        && v != "1.0"
    {
        return Err("bad version");
    }
    if !bool::from(key.as_bytes().ct_eq(shared.consumer_key.as_bytes())) {
        return Err("unknown consumer");
    }
    let now = util::now_unix();
    if now.abs_diff(ts) > shared.timestamp_window {
        return Err("stale timestamp");
    }
    let mut all: Vec<(String, String)> = request_params
        .into_iter()
        .chain(
            protocol
                .iter()
                .filter(|(k, _)| k != "oauth_signature")
                .cloned(),
        )
        .map(|(k, v)| (util::percent_encode(&k), util::percent_encode(&v)))
        .collect();
    all.sort();
    let normalized = all
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        util::percent_encode(base_uri),
        util::percent_encode(&normalized)
    );
    let signing_key = format!("{}&", util::percent_encode(&shared.consumer_secret));
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(signing_key.as_bytes())
        .map_err(|_| "hmac")?;
    mac.update(base.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
        return Err("bad signature");
    }
    let mut core = shared.lock();
    let window = shared.timestamp_window;
    core.nonces
        .retain(|_, t| now.abs_diff(*t) <= window * 2 + 1);
    let nonce_key = format!("{key}\n{nonce}");
    if core.nonces.contains_key(&nonce_key) {
        return Err("reused nonce");
    }
    core.nonces.insert(nonce_key, ts);
    Ok(())
}

fn cerr(e: ControlError) -> Reply {
    let status = match e {
        ControlError::NotFound(_) => 404,
        ControlError::Invalid(_) => 400,
        ControlError::Exists(_) => 409,
    };
    Reply::json(status, &json!({"error": e.to_string()}))
}

fn ok_json<T: serde::Serialize>(v: &T) -> Reply {
    match serde_json::to_value(v) {
        Ok(v) => Reply::json(200, &v),
        Err(e) => Reply::json(500, &json!({"error": e.to_string()})),
    }
}

fn body_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| Reply::json(400, &json!({"error": format!("bad JSON: {e}")})))
}

fn param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The unsigned JSON control interface under `/_sim`.
async fn control(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Reply {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let unit = || Reply::json(200, &json!({"ok": true}));
    match (method, segs.as_slice()) {
        ("GET", ["info"]) => Reply::json(
            200,
            &json!({
                "url": shared.base_url,
                "consumer_key": shared.consumer_key,
                "consumer_secret": shared.consumer_secret,
            }),
        ),
        ("POST", ["users"]) => match body_json::<NewUser>(body) {
            Ok(spec) => match crate::control_create_user(shared, &spec) {
                Ok(u) => ok_json(&u),
                Err(e) => cerr(e),
            },
            Err(r) => r,
        },
        ("POST", ["users", "update"]) => {
            #[derive(serde::Deserialize)]
            struct Upd {
                name: String,
                enabled: Option<bool>,
                requires_otp: Option<bool>,
            }
            match body_json::<Upd>(body) {
                Ok(u) => {
                    let mut core = shared.lock();
                    let Some(id) = core.state.user_by_name(&u.name).map(|x| x.id.clone()) else {
                        return cerr(ControlError::NotFound(format!("user {}", u.name)));
                    };
                    if let Some(rec) = core.state.users.get_mut(&id) {
                        if let Some(e) = u.enabled {
                            rec.enabled = e;
                        }
                        if let Some(r) = u.requires_otp {
                            rec.requires_otp = r;
                        }
                    }
                    unit()
                }
                Err(r) => r,
            }
        }
        ("GET", ["pairings"]) => {
            let core = shared.lock();
            let list: Vec<Value> = core
                .state
                .pairings
                .values()
                .map(|p| {
                    json!({
                        "id": p.id, "pending": p.pending, "enabled": p.enabled,
                        "deactivated": p.deactivated, "kind": p.kind,
                        "phrase": p.phrase, "phone_number": p.phone_number,
                        "user_name": core.state.users.get(&p.user_id).map(|u| u.name.clone()),
                    })
                })
                .collect();
            Reply::json(200, &Value::Array(list))
        }
        ("POST", ["pairings", "phrase"]) => {
            #[derive(serde::Deserialize)]
            struct Ph {
                phrase: String,
            }
            match body_json::<Ph>(body) {
                Ok(p) => match crate::control_enter_phrase(shared, &p.phrase) {
                    Ok(id) => Reply::json(200, &json!({"pairing_id": id})),
                    Err(e) => cerr(e),
                },
                Err(r) => r,
            }
        }
        ("POST", ["pairings", id, "complete"]) => {
            let mut core = shared.lock();
            if core.state.complete_pairing(id) {
                unit()
            } else {
                cerr(ControlError::NotFound(format!("pairing {id}")))
            }
        }
        ("POST", ["pairings", id, "deactivate"]) => {
            let mut core = shared.lock();
            match core.state.pairings.get_mut(*id) {
                Some(p) => {
                    p.deactivated = true;
                    p.enabled = false;
                    unit()
                }
                None => cerr(ControlError::NotFound(format!("pairing {id}"))),
            }
        }
        ("GET", ["pairings", id, "otp"]) => {
            let core = shared.lock();
            match core.state.pairings.get(*id) {
                Some(p) => {
                    let at = param(query, "at")
                        .and_then(|t| t.parse().ok())
                        .unwrap_or_else(util::now_unix);
                    Reply::json(200, &json!({"otp": util::totp(&p.totp_secret, at)}))
                }
                None => cerr(ControlError::NotFound(format!("pairing {id}"))),
            }
        }
        ("GET", ["requests"]) => {
            let mut list = crate::control_requests(shared);
            if param(query, "pending").as_deref() == Some("true") {
                list.retain(|r| r.pending);
            }
            ok_json(&list)
        }
        ("POST", ["requests", "wait"]) => {
            let ms = param(query, "timeout_ms")
                .and_then(|t| t.parse().ok())
                .unwrap_or(10_000u64);
            match crate::wait_pending(shared, Duration::from_millis(ms)).await {
                Some(id) => Reply::json(200, &json!({"id": id})),
                None => Reply::json(408, &json!({"error": "no pending request"})),
            }
        }
        ("POST", ["requests", id, action]) => {
            #[derive(serde::Deserialize, Default)]
            struct R {
                reason: Option<String>,
            }
            let r: R = match body_json(body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let answer = match *action {
                "grant" => Answer::Grant,
                "deny" => Answer::Deny,
                "timeout" => Answer::Timeout,
                _ => return cerr(ControlError::Invalid(format!("unknown action {action}"))),
            };
            match crate::control_answer(shared, id, answer, r.reason.as_deref()) {
                Ok(()) => unit(),
                Err(e) => cerr(e),
            }
        }
        ("POST", ["auto_answer"]) => match body_json::<crate::AutoAnswer>(body) {
            Ok(a) => {
                shared.lock().state.auto_answer = Some(a);
                unit()
            }
            Err(r) => r,
        },
        ("DELETE", ["auto_answer"]) => {
            shared.lock().state.auto_answer = None;
            unit()
        }
        ("POST", ["request_ttl"]) => {
            #[derive(serde::Deserialize)]
            struct T {
                ms: Option<u64>,
            }
            match body_json::<T>(body) {
                Ok(t) => {
                    shared.lock().state.request_ttl = t.ms.map(Duration::from_millis);
                    unit()
                }
                Err(r) => r,
            }
        }
        ("GET", ["failures"]) => ok_json(&shared.lock().failures.clone()),
        ("POST", ["failures"]) => match body_json::<FailureRule>(body) {
            Ok(rule) => {
                shared.lock().failures.push(rule);
                unit()
            }
            Err(r) => r,
        },
        ("DELETE", ["failures"]) => {
            shared.lock().failures.clear();
            unit()
        }
        ("GET", ["log"]) => ok_json(&shared.lock().log.clone()),
        ("DELETE", ["log"]) => {
            shared.lock().log.clear();
            unit()
        }
        ("GET", ["reset_emails"]) => ok_json(&shared.lock().state.reset_emails.clone()),
        _ => Reply::json(404, &json!({"error": "unknown control route"})),
    }
}
