//! The simulated service: users, pairings, terminals, authentication requests, and
//! the v1 endpoints working on them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::util;

/// Reason codes the simulator uses (documented in the README).
pub mod reason {
    /// Granted by the person.
    pub const GRANTED: i64 = 100;
    /// Denied by the person.
    pub const DENIED: i64 = 101;
    /// Settled by a valid OTP.
    pub const OTP_VALID: i64 = 102;
    /// Refused: invalid OTP.
    pub const OTP_INVALID: i64 = 103;
    /// Timed out.
    pub const TIMED_OUT: i64 = 104;
    /// Granted automatically by the app.
    pub const AUTOMATED: i64 = 105;
}

/// A user record.
#[derive(Debug, Clone)]
pub struct UserRec {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub requires_otp: bool,
}

/// How a pairing was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairingKind {
    Phrase,
    Sms,
    Qr,
    Control,
}

/// A pairing record; `totp_secret` is what the phone app would hold.
#[derive(Clone)]
pub struct PairingRec {
    pub id: String,
    pub user_id: String,
    pub enabled: bool,
    pub pending: bool,
    pub deactivated: bool,
    pub kind: PairingKind,
    pub phrase: Option<String>,
    pub phone_number: Option<String>,
    pub totp_secret: Vec<u8>,
}

impl std::fmt::Debug for PairingRec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingRec")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("enabled", &self.enabled)
            .field("pending", &self.pending)
            .field("deactivated", &self.deactivated)
            .field("kind", &self.kind)
            .field("totp_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A terminal record.
#[derive(Debug, Clone)]
pub struct TerminalRec {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub requester_specified_id: String,
}

/// An authentication request record.
#[derive(Debug, Clone)]
pub struct RequestRec {
    pub id: String,
    pub user_id: String,
    pub pairing_id: String,
    pub terminal_id: String,
    pub action_id: String,
    pub action_name: String,
    pub pending: bool,
    pub granted: bool,
    pub automated: bool,
    pub reason: String,
    pub reason_code: i64,
    pub automation_allowed: bool,
    pub challenge_required: bool,
    pub created: Instant,
}

/// How the simulated phone answers pushes by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoAnswer {
    /// Grant (true) or deny (false).
    pub grant: bool,
    /// After this many milliseconds.
    #[serde(default)]
    pub after_ms: u64,
    /// The reason text (default "Granted by the simulator" / "Denied by the simulator").
    #[serde(default)]
    pub reason: Option<String>,
    /// Answer as the app would by itself (`automated=true`); not applied when the
    /// request has `automation_allowed=false` (it stays pending).
    #[serde(default)]
    pub automated: bool,
}

/// A reply of the API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            body: v.to_string().into_bytes(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn error(status: u16, code: i64, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({"error_code": code, "error_message": message}),
        )
    }
}

/// Something that happened, for waiters and the interactive terminal.
#[derive(Debug, Clone)]
pub enum SimEvent {
    /// A push is waiting for an answer.
    NewRequest {
        id: String,
        user_name: String,
        terminal_name: String,
        action_name: String,
    },
    /// A request was settled.
    Settled { id: String, granted: bool },
}

/// The whole in-memory service.
#[derive(Debug, Default)]
pub struct State {
    pub users: BTreeMap<String, UserRec>,
    pub pairings: BTreeMap<String, PairingRec>,
    pub terminals: BTreeMap<String, TerminalRec>,
    pub requests: BTreeMap<String, RequestRec>,
    pub request_order: Vec<String>,
    pub actions: BTreeMap<String, String>,
    pub reset_links: Vec<(String, String)>,
    pub reset_emails: Vec<(String, String)>,
    pub auto_answer: Option<AutoAnswer>,
    pub request_ttl: Option<Duration>,
    pub string_reason_codes: bool,
    pub base_url: String,
    pub events: Vec<SimEvent>,
}

type Params = Vec<(String, String)>;

fn get<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn get_nonempty<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    get(p, name).filter(|v| !v.is_empty())
}

/// `true`/`false` as every library spelled them.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" | "1" => Some(true),
        "false" | "False" | "FALSE" | "0" => Some(false),
        _ => None,
    }
}

fn missing(name: &str) -> Reply {
    Reply::error(400, 400, &format!("Missing required parameter: {name}"))
}

fn not_found() -> Reply {
    Reply::error(404, 404, "No such object.")
}

pub const MSG_USER_DISABLED: &str = "The specified user has disabled Toopher authentication.";
pub const MSG_USER_UNKNOWN: &str = "No matching user exists.";
pub const MSG_TERMINAL_UNKNOWN: &str = "No matching terminal exists.";
pub const MSG_PAIRING_DEACTIVATED: &str = "Pairing has been deactivated.";
pub const MSG_REQUIRES_OTP: &str = "User requires OTP authentication";

impl State {
    pub fn user_json(&self, id: &str) -> Value {
        match self.users.get(id) {
            Some(u) => {
                json!({"id": u.id, "name": u.name, "toopher_authentication_enabled": u.enabled})
            }
            None => Value::Null,
        }
    }

    pub fn pairing_json(&self, p: &PairingRec) -> Value {
        json!({
            "id": p.id, "enabled": p.enabled, "pending": p.pending,
            "deactivated": p.deactivated, "user": self.user_json(&p.user_id)
        })
    }

    pub fn terminal_json(&self, t: &TerminalRec) -> Value {
        json!({
            "id": t.id, "name": t.name, "requester_specified_id": t.requester_specified_id,
            "user": self.user_json(&t.user_id)
        })
    }

    pub fn request_json(&self, r: &RequestRec) -> Value {
        let terminal = self
            .terminals
            .get(&r.terminal_id)
            .map(|t| self.terminal_json(t))
            .unwrap_or(Value::Null);
        let reason_code = if self.string_reason_codes {
            Value::String(r.reason_code.to_string())
        } else {
            json!(r.reason_code)
        };
        json!({
            "id": r.id, "pending": r.pending, "granted": r.granted, "automated": r.automated,
            "reason": r.reason, "reason_code": reason_code, "terminal": terminal,
            "user": self.user_json(&r.user_id),
            "action": {"id": r.action_id, "name": r.action_name},
        })
    }

    pub fn user_by_name(&self, name: &str) -> Option<&UserRec> {
        self.users.values().find(|u| u.name == name)
    }

    /// Creates a user (no uniqueness check).
    pub fn insert_user(&mut self, name: &str) -> String {
        let id = util::uuid4();
        self.users.insert(
            id.clone(),
            UserRec {
                id: id.clone(),
                name: name.to_owned(),
                enabled: true,
                requires_otp: false,
            },
        );
        id
    }

    fn user_id_or_create(&mut self, name: &str) -> String {
        match self.user_by_name(name) {
            Some(u) => u.id.clone(),
            None => self.insert_user(name),
        }
    }

    /// Creates a pairing for a user (deactivating the user's other pairings).
    pub fn insert_pairing(
        &mut self,
        user_id: &str,
        kind: PairingKind,
        secret: Option<Vec<u8>>,
        pending: bool,
    ) -> String {
        for p in self.pairings.values_mut().filter(|p| p.user_id == user_id) {
            if !p.deactivated {
                p.deactivated = true;
                p.enabled = false;
            }
        }
        let id = util::uuid4();
        self.pairings.insert(
            id.clone(),
            PairingRec {
                id: id.clone(),
                user_id: user_id.to_owned(),
                enabled: !pending,
                pending,
                deactivated: false,
                kind,
                phrase: None,
                phone_number: None,
                totp_secret: secret.unwrap_or_else(|| util::random_bytes(20)),
            },
        );
        id
    }

    /// Completes a pending pairing, as the phone would.
    pub fn complete_pairing(&mut self, id: &str) -> bool {
        match self.pairings.get_mut(id) {
            Some(p) if !p.deactivated => {
                p.pending = false;
                p.enabled = true;
                true
            }
            _ => false,
        }
    }

    /// The active pairing of a user, if any.
    pub fn active_pairing(&self, user_id: &str) -> Option<&PairingRec> {
        self.pairings
            .values()
            .find(|p| p.user_id == user_id && !p.deactivated)
    }

    fn action_id(&mut self, name: &str) -> String {
        if let Some(id) = self.actions.get(name) {
            return id.clone();
        }
        let id = util::uuid4();
        self.actions.insert(name.to_owned(), id.clone());
        id
    }

    /// Settles a pending request. False when it was not pending.
    pub fn settle(
        &mut self,
        id: &str,
        granted: bool,
        automated: bool,
        reason: &str,
        code: i64,
    ) -> bool {
        let Some(r) = self.requests.get_mut(id) else {
            return false;
        };
        if !r.pending {
            return false;
        }
        r.pending = false;
        r.granted = granted;
        r.automated = automated;
        r.reason = reason.to_owned();
        r.reason_code = code;
        self.events.push(SimEvent::Settled {
            id: id.to_owned(),
            granted,
        });
        true
    }

    /// Times out pending requests older than the request TTL.
    pub fn expire_stale(&mut self) {
        let Some(ttl) = self.request_ttl else { return };
        let stale: Vec<String> = self
            .requests
            .values()
            .filter(|r| r.pending && r.created.elapsed() >= ttl)
            .map(|r| r.id.clone())
            .collect();
        for id in stale {
            self.settle(
                &id,
                false,
                false,
                "The request has timed out.",
                reason::TIMED_OUT,
            );
        }
    }

    /// The ids of pending requests, oldest first.
    pub fn pending_ids(&self) -> Vec<String> {
        self.request_order
            .iter()
            .filter(|id| self.requests.get(*id).is_some_and(|r| r.pending))
            .cloned()
            .collect()
    }

    /// Dispatches one signed API call. `path` is below the `/v1` prefix.
    pub fn api(&mut self, method: &str, path: &str, params: &Params) -> Reply {
        self.expire_stale();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segs.as_slice()) {
            ("POST", ["pairings", "create"]) => self.pair(params, PairingKind::Phrase),
            ("POST", ["pairings", "create", "sms"]) => self.pair(params, PairingKind::Sms),
            ("POST", ["pairings", "create", "qr"]) => self.pair(params, PairingKind::Qr),
            ("GET", ["pairings", id]) => match self.pairings.get(*id) {
                Some(p) => Reply::json(200, &self.pairing_json(p)),
                None => not_found(),
            },
            ("GET", ["qr", "pairings", id]) => match self.pairings.get(*id) {
                Some(p) => Reply {
                    status: 200,
                    body: util::qr_png(&format!("toopher-sim:pair:{}", p.id)),
                    content_type: "image/png",
                    headers: Vec::new(),
                },
                None => not_found(),
            },
            ("POST", ["pairings", id, "generate_reset_link"]) => {
                if !self.pairings.contains_key(*id) {
                    return not_found();
                }
                let url = format!(
                    "{}/web/reset_pairing/{}",
                    self.base_url,
                    util::random_hex(16)
                );
                self.reset_links.push(((*id).to_owned(), url.clone()));
                Reply::json(200, &json!({"url": url}))
            }
            ("POST", ["pairings", id, "send_reset_link"]) => {
                if !self.pairings.contains_key(*id) {
                    return not_found();
                }
                let Some(email) = get_nonempty(params, "reset_email") else {
                    return missing("reset_email");
                };
                self.reset_emails.push(((*id).to_owned(), email.to_owned()));
                Reply::json(201, &json!([]))
            }
            ("POST", ["authentication_requests", "initiate"]) => self.initiate(params),
            ("GET", ["authentication_requests", id]) => {
                let Some(r) = self.requests.get(*id) else {
                    return not_found();
                };
                if self.users.get(&r.user_id).is_some_and(|u| !u.enabled) {
                    return Reply::error(409, 704, MSG_USER_DISABLED);
                }
                Reply::json(200, &self.request_json(r))
            }
            ("POST", ["authentication_requests", id, "otp_auth"]) => self.otp_auth(id, params),
            ("GET", ["users"]) => {
                let Some(name) = get(params, "name") else {
                    return missing("name");
                };
                let list: Vec<Value> = self
                    .users
                    .values()
                    .filter(|u| u.name == name)
                    .map(|u| self.user_json(&u.id))
                    .collect();
                Reply::json(200, &Value::Array(list))
            }
            ("POST", ["users", "create"]) => {
                let Some(name) = get_nonempty(params, "name") else {
                    return missing("name");
                };
                if self.user_by_name(name).is_some() {
                    return Reply::error(409, 409, "A user with that name already exists.");
                }
                let id = self.insert_user(name);
                Reply::json(200, &self.user_json(&id))
            }
            ("POST", ["users", "reset"]) => {
                let Some(name) =
                    get_nonempty(params, "user_name").or_else(|| get_nonempty(params, "name"))
                else {
                    return missing("user_name");
                };
                let Some(uid) = self.user_by_name(name).map(|u| u.id.clone()) else {
                    return Reply::error(409, 705, MSG_USER_UNKNOWN);
                };
                for p in self.pairings.values_mut().filter(|p| p.user_id == uid) {
                    p.deactivated = true;
                    p.enabled = false;
                }
                Reply::json(200, &json!({}))
            }
            ("GET", ["users", id]) => match self.users.contains_key(*id) {
                true => Reply::json(200, &self.user_json(id)),
                false => not_found(),
            },
            ("POST", ["users", id]) => {
                let Some(v) = get(params, "toopher_authentication_enabled") else {
                    return missing("toopher_authentication_enabled");
                };
                let Some(b) = parse_bool(v) else {
                    return Reply::error(
                        400,
                        400,
                        "toopher_authentication_enabled must be true or false",
                    );
                };
                let Some(u) = self.users.get_mut(*id) else {
                    return not_found();
                };
                u.enabled = b;
                Reply::json(200, &self.user_json(id))
            }
            ("POST", ["user_terminals", "create"]) => {
                let (Some(user_name), Some(name)) = (
                    get_nonempty(params, "user_name"),
                    get_nonempty(params, "name"),
                ) else {
                    return missing("user_name, name");
                };
                let rsid = get(params, "requester_specified_id")
                    .or_else(|| get(params, "name_extra"))
                    .unwrap_or("")
                    .to_owned();
                let Some(uid) = self.user_by_name(user_name).map(|u| u.id.clone()) else {
                    return Reply::error(409, 705, MSG_USER_UNKNOWN);
                };
                if self
                    .terminals
                    .values()
                    .any(|t| t.user_id == uid && t.requester_specified_id == rsid)
                {
                    return Reply::error(
                        409,
                        409,
                        "A terminal with that requester specified id already exists.",
                    );
                }
                let id = self.insert_terminal(&uid, name, &rsid);
                Reply::json(200, &self.terminal_json(&self.terminals[&id]))
            }
            ("GET", ["user_terminals", id]) => match self.terminals.get(*id) {
                Some(t) => Reply::json(200, &self.terminal_json(t)),
                None => not_found(),
            },
            _ => Reply::error(404, 404, "No such endpoint."),
        }
    }

    fn insert_terminal(&mut self, user_id: &str, name: &str, rsid: &str) -> String {
        let id = util::uuid4();
        self.terminals.insert(
            id.clone(),
            TerminalRec {
                id: id.clone(),
                user_id: user_id.to_owned(),
                name: name.to_owned(),
                requester_specified_id: rsid.to_owned(),
            },
        );
        id
    }

    fn pair(&mut self, params: &Params, kind: PairingKind) -> Reply {
        let Some(user_name) = get_nonempty(params, "user_name") else {
            return missing("user_name");
        };
        let (phrase, phone) = match kind {
            PairingKind::Phrase => match get_nonempty(params, "pairing_phrase") {
                Some(p) => (Some(p.to_owned()), None),
                None => return missing("pairing_phrase"),
            },
            PairingKind::Sms => match get_nonempty(params, "phone_number") {
                Some(p) => (None, Some(p.to_owned())),
                None => return missing("phone_number"),
            },
            _ => (None, None),
        };
        let uid = self.user_id_or_create(user_name);
        let id = self.insert_pairing(&uid, kind, None, true);
        if let Some(p) = self.pairings.get_mut(&id) {
            p.phrase = phrase;
            p.phone_number = phone;
        }
        Reply::json(200, &self.pairing_json(&self.pairings[&id]))
    }

    fn initiate(&mut self, params: &Params) -> Reply {
        // Who.
        let pairing = if let Some(pid) = get_nonempty(params, "pairing_id") {
            match self.pairings.get(pid) {
                None => return not_found(),
                Some(p) if p.deactivated => {
                    return Reply::error(403, 601, "This pairing has been deactivated.");
                }
                Some(p) if p.pending || !p.enabled => {
                    return Reply::error(
                        403,
                        601,
                        "This pairing has not been authorized to authenticate.",
                    );
                }
                Some(p) => p.clone(),
            }
        } else if let Some(name) = get_nonempty(params, "user_name") {
            let Some(uid) = self.user_by_name(name).map(|u| u.id.clone()) else {
                return Reply::error(409, 705, MSG_USER_UNKNOWN);
            };
            match self.active_pairing(&uid) {
                Some(p) if p.pending || !p.enabled => {
                    return Reply::error(
                        403,
                        601,
                        "This pairing has not been authorized to authenticate.",
                    );
                }
                Some(p) => p.clone(),
                None if self.pairings.values().any(|p| p.user_id == uid) => {
                    return Reply::error(409, 707, MSG_PAIRING_DEACTIVATED);
                }
                None => return Reply::error(409, 705, MSG_USER_UNKNOWN),
            }
        } else {
            return missing("pairing_id or user_name");
        };
        let Some(user) = self.users.get(&pairing.user_id).cloned() else {
            return Reply::error(409, 705, MSG_USER_UNKNOWN);
        };
        if !user.enabled {
            return Reply::error(409, 704, MSG_USER_DISABLED);
        }

        let flag = |name: &str| -> Result<Option<bool>, Reply> {
            match get(params, name) {
                None => Ok(None),
                Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
                    Reply::error(400, 400, &format!("{name} must be true or false"))
                }),
            }
        };
        let automation_allowed = match flag("automation_allowed") {
            Ok(v) => v.unwrap_or(true),
            Err(r) => return r,
        };
        let challenge_required = match flag("challenge_required") {
            Ok(v) => v.unwrap_or(false),
            Err(r) => return r,
        };

        // Where from.
        let terminal_name = get_nonempty(params, "terminal_name");
        let rsid = get_nonempty(params, "requester_specified_terminal_id")
            .or_else(|| get_nonempty(params, "terminal_name_extra"));
        let terminal_id = if let Some(tid) = get_nonempty(params, "terminal_id") {
            match self.terminals.get(tid) {
                Some(t) if t.user_id == user.id => t.id.clone(),
                _ => return Reply::error(409, 706, MSG_TERMINAL_UNKNOWN),
            }
        } else {
            let rsid_s = rsid.unwrap_or("");
            let existing = self
                .terminals
                .values()
                .find(|t| {
                    t.user_id == user.id
                        && if rsid.is_some() {
                            t.requester_specified_id == rsid_s
                        } else {
                            Some(t.name.as_str()) == terminal_name
                        }
                })
                .map(|t| t.id.clone());
            match (existing, terminal_name) {
                (Some(id), Some(name)) => {
                    if let Some(t) = self.terminals.get_mut(&id) {
                        t.name = name.to_owned();
                    }
                    id
                }
                (Some(id), None) => id,
                (None, Some(name)) => self.insert_terminal(&user.id, name, rsid_s),
                (None, None) if rsid.is_some() => {
                    return Reply::error(409, 706, MSG_TERMINAL_UNKNOWN);
                }
                (None, None) => self.insert_terminal(&user.id, "unknown terminal", ""),
            }
        };

        let action_name = get_nonempty(params, "action_name")
            .unwrap_or("Log In")
            .to_owned();
        let action_id = self.action_id(&action_name);
        let otp = get(params, "otp");
        if user.requires_otp && otp.is_none() {
            return Reply::error(409, 708, MSG_REQUIRES_OTP);
        }

        let id = util::uuid4();
        let mut rec = RequestRec {
            id: id.clone(),
            user_id: user.id.clone(),
            pairing_id: pairing.id.clone(),
            terminal_id,
            action_id,
            action_name: action_name.clone(),
            pending: true,
            granted: false,
            automated: false,
            reason: String::new(),
            reason_code: 0,
            automation_allowed,
            challenge_required,
            created: Instant::now(),
        };
        if let Some(code) = otp {
            let ok = util::totp_verify(&pairing.totp_secret, code, util::now_unix());
            rec.pending = false;
            rec.granted = ok;
            rec.reason = if ok {
                "OTP authenticated"
            } else {
                "Invalid OTP"
            }
            .to_owned();
            rec.reason_code = if ok {
                reason::OTP_VALID
            } else {
                reason::OTP_INVALID
            };
        }
        let pending = rec.pending;
        self.requests.insert(id.clone(), rec);
        self.request_order.push(id.clone());
        if pending {
            let terminal_name = self
                .terminals
                .get(&self.requests[&id].terminal_id)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            self.events.push(SimEvent::NewRequest {
                id: id.clone(),
                user_name: user.name.clone(),
                terminal_name,
                action_name,
            });
        }
        Reply::json(200, &self.request_json(&self.requests[&id]))
    }

    fn otp_auth(&mut self, id: &str, params: &Params) -> Reply {
        let Some(otp) = get_nonempty(params, "otp") else {
            return missing("otp");
        };
        let Some(r) = self.requests.get(id).cloned() else {
            return not_found();
        };
        if self.users.get(&r.user_id).is_some_and(|u| !u.enabled) {
            return Reply::error(409, 704, MSG_USER_DISABLED);
        }
        if r.pending {
            let ok = self.pairings.get(&r.pairing_id).is_some_and(|p| {
                !p.deactivated && util::totp_verify(&p.totp_secret, otp, util::now_unix())
            });
            if ok {
                self.settle(id, true, false, "OTP authenticated", reason::OTP_VALID);
            } else {
                self.settle(id, false, false, "Invalid OTP", reason::OTP_INVALID);
            }
        }
        Reply::json(200, &self.request_json(&self.requests[id]))
    }
}
