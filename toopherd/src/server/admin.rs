//! toopherctl's account management: pairing, listing, suspension, reset, reset links,
//! terminals and recovery codes. Administrative requests need root or `admin_group`; a
//! user may pair and regenerate recovery codes for themselves.

use super::*;
use crate::toopher::api_error;
use toopher_ipc::{PairBy, PairingInfo, TerminalInfo};

impl Conn {
    fn api_failure(&self, what: &str, user: &str, e: &toopher_api::Error) -> Response {
        let (kind, message) = api_error(e);
        self.log_admin(
            what,
            user,
            &format!("failed detail={}", field(Some(&message))),
        );
        Response::error(kind, message)
    }

    pub(super) async fn pair(&mut self, user: String, by: PairBy) -> Response {
        if let Some(refusal) = self.authorize("pair", &user, false) {
            return refusal;
        }
        let tb = match self.toopher("pair") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        // Pairing a new phone over an existing pairing replaces the second factor: like
        // `enroll --force`, only an administrator may (someone with only the user's session
        // or password must not be able to move the account to their own phone).
        if !self.peer.is_admin() {
            let name = user.clone();
            match self.d.db(move |s| s.pairing(&name)).await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return self
                        .authorize("pair over an existing pairing", &user, true)
                        .unwrap_or_else(|| {
                            Response::error(
                                ErrorKind::Forbidden,
                                "pairing needs root or the admin group",
                            )
                        });
                }
                Err(e) => return internal(&self.d, "pairing", &e),
            }
        }
        let name = tb.name_of(&user);
        let (arg, extras): (Option<String>, Vec<(&str, String)>) = match &by {
            PairBy::Phrase { phrase } if registration::valid_phrase(phrase.trim()) => {
                (Some(phrase.trim().to_owned()), vec![])
            }
            PairBy::Phrase { .. } => {
                return Response::error(
                    ErrorKind::BadRequest,
                    "a pairing phrase is a few words, without digits",
                );
            }
            PairBy::Sms { phone, country } => {
                let ok = phone.len() <= 20
                    && phone.chars().any(|c| c.is_ascii_digit())
                    && phone
                        .chars()
                        .all(|c| c.is_ascii_digit() || "+-() ".contains(c));
                if !ok {
                    return Response::error(ErrorKind::BadRequest, "not a phone number");
                }
                let extras = country
                    .iter()
                    .map(|c| ("phone_country", c.clone()))
                    .collect();
                (Some(phone.clone()), extras)
            }
            PairBy::Qr => (None, vec![]),
        };
        let extras: Vec<(&str, &str)> = extras.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let pairing = match tb.api().pair(&name, arg.as_deref(), &extras).await {
            Ok(p) => p,
            Err(e) => return self.api_failure("pair", &user, &e),
        };
        let qr = if matches!(by, PairBy::Qr) {
            match tb.api().get_pairing_qr_code_image(&pairing.id).await {
                Ok(png) => match crate::qr::recompress_png(&png) {
                    Ok(small) => Some(small),
                    Err(e) => {
                        self.log_admin(
                            "pair",
                            &user,
                            &format!("failed detail={}", field(Some(&e.to_string()))),
                        );
                        return Response::error(
                            ErrorKind::Internal,
                            "the QR code from the Toopher API could not be read",
                        );
                    }
                },
                Err(e) => return self.api_failure("pair", &user, &e),
            }
        } else {
            None
        };
        self.log_admin(
            "pair",
            &user,
            &format!("started pairing_id={}", field(Some(&pairing.id))),
        );
        self.pairing_answer(&user, pairing, qr).await
    }

    /// Records an enabled pairing and answers its state.
    async fn pairing_answer(
        &self,
        user: &str,
        p: toopher_api::Pairing,
        qr: Option<String>,
    ) -> Response {
        let done = p.enabled && !p.pending;
        if done {
            let (u, id) = (user.to_owned(), p.id.clone());
            if let Err(e) = self.d.db(move |s| s.record_pairing(&u, &id, now())).await {
                return internal(&self.d, "record pairing", &e);
            }
            self.log_admin("pair", user, "paired");
        }
        Response::Pairing(PairingInfo {
            user: user.to_owned(),
            pairing_id: p.id,
            enabled: p.enabled,
            pending: p.pending,
            qr_png_base64: qr,
        })
    }

    pub(super) async fn pair_status(&mut self, user: String, pairing_id: String) -> Response {
        if let Some(refusal) = self.authorize("pair", &user, false) {
            return refusal;
        }
        let tb = match self.toopher("pair") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        match tb.api().get_pairing_by_id(&pairing_id).await {
            // A pairing of someone else can never be recorded for this user.
            Ok(p) if p.user.name != tb.name_of(&user) => {
                self.log_admin("pair", &user, "refused reason=pairing_of_another_user");
                Response::error(
                    ErrorKind::Forbidden,
                    format!("that pairing does not belong to {user}"),
                )
            }
            Ok(p) => self.pairing_answer(&user, p, None).await,
            Err(e) => self.api_failure("pair", &user, &e),
        }
    }

    pub(super) async fn list(&mut self) -> Response {
        if !self.peer.is_admin() {
            return self.refuse_admin("list", "-");
        }
        let limits = self.d.limits();
        let backend = self.d.config.backend.as_str();
        let all = self
            .d
            .db(move |s| {
                let now = now();
                s.users()?
                    .iter()
                    .map(|u| s.status(u, backend, now, limits))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        match all {
            Ok(accounts) => Response::Accounts { accounts },
            Err(e) => internal(&self.d, "list", &e),
        }
    }

    fn refuse_admin(&self, request: &str, user: &str) -> Response {
        self.d.log.abuse(
            self.peer.uid,
            crate::logging::Abuse::BadInput,
            &format!(
                "refused request={request} user={} by={}",
                field(Some(user)),
                self.peer.describe()
            ),
        );
        Response::error(
            ErrorKind::Forbidden,
            format!("{request} is an administrative request: it needs root or the admin group"),
        )
    }

    pub(super) async fn set_enabled(&mut self, user: String, enabled: bool) -> Response {
        let what = if enabled { "enable" } else { "disable" };
        if let Some(refusal) = self.authorize(what, &user, true) {
            return refusal;
        }
        if let Some(tb) = self.d.toopher.as_ref() {
            let name = tb.name_of(&user);
            let r = if enabled {
                tb.api().enable_user(&name).await
            } else {
                tb.api().disable_user(&name).await
            };
            if let Err(e) = r {
                return self.api_failure(what, &user, &e);
            }
        }
        let name = user.clone();
        if let Err(e) = self
            .d
            .db(move |s| s.set_suspended(&name, !enabled, now()))
            .await
        {
            return internal(&self.d, what, &e);
        }
        self.log_admin(what, &user, if enabled { "enabled" } else { "suspended" });
        self.status(user).await
    }

    pub(super) async fn reset(&mut self, user: String) -> Response {
        if let Some(refusal) = self.authorize("reset", &user, true) {
            return refusal;
        }
        if let Some(tb) = self.d.toopher.as_ref() {
            match tb.api().reset_user(&tb.name_of(&user)).await {
                Ok(()) => {}
                // Unknown to Toopher: nothing to reset there.
                Err(e) if api_error(&e).0 == ErrorKind::NotFound => {}
                Err(e) => return self.api_failure("reset", &user, &e),
            }
        }
        let name = user.clone();
        match self.d.db(move |s| s.forget(&name)).await {
            Ok(existed) => {
                self.log_admin("reset", &user, "reset");
                Response::Removed { user, existed }
            }
            Err(e) => internal(&self.d, "reset", &e),
        }
    }

    pub(super) async fn reset_link(&mut self, user: String, email: Option<String>) -> Response {
        if let Some(refusal) = self.authorize("reset-link", &user, true) {
            return refusal;
        }
        let tb = match self.toopher("reset-link") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        let name = user.clone();
        let pairing = match self.d.db(move |s| s.pairing(&name)).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Response::error(
                    ErrorKind::NotFound,
                    format!("{user} has no recorded pairing"),
                );
            }
            Err(e) => return internal(&self.d, "reset-link", &e),
        };
        match email {
            Some(address) => {
                let ok = address.len() <= 254
                    && address.contains('@')
                    && !address.chars().any(|c| c.is_control() || c.is_whitespace());
                if !ok {
                    return Response::error(ErrorKind::BadRequest, "not an e-mail address");
                }
                match tb
                    .api()
                    .email_pairing_reset_link_to_user(&pairing, &address, &[])
                    .await
                {
                    Ok(()) => {
                        self.log_admin("reset_link", &user, "emailed");
                        Response::ResetLink {
                            user,
                            url: None,
                            emailed_to: Some(address),
                        }
                    }
                    Err(e) => self.api_failure("reset_link", &user, &e),
                }
            }
            None => match tb
                .api()
                .get_pairing_reset_link(&pairing, None, None, &[])
                .await
            {
                Ok(url) => {
                    self.log_admin("reset_link", &user, "shown");
                    Response::ResetLink {
                        user,
                        url: Some(url),
                        emailed_to: None,
                    }
                }
                Err(e) => self.api_failure("reset_link", &user, &e),
            },
        }
    }

    pub(super) async fn terminal_create(
        &mut self,
        user: String,
        name: String,
        requester_id: String,
    ) -> Response {
        if let Some(refusal) = self.authorize("terminals", &user, true) {
            return refusal;
        }
        let tb = match self.toopher("terminals") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        let printable =
            |s: &str| !s.is_empty() && s.len() <= 120 && !s.chars().any(char::is_control);
        if !printable(&name) || !printable(&requester_id) {
            return Response::error(
                ErrorKind::BadRequest,
                "terminal name and id must be 1-120 printable characters",
            );
        }
        match tb
            .api()
            .create_user_terminal(&tb.name_of(&user), &name, &requester_id, &[])
            .await
        {
            Ok(t) => {
                self.log_admin("terminal_create", &user, "created");
                Response::Terminal(TerminalInfo {
                    id: t.id,
                    name: t.name,
                    requester_specified_id: t.requester_specified_id,
                    user,
                })
            }
            Err(e) => self.api_failure("terminal_create", &user, &e),
        }
    }

    pub(super) async fn terminal_show(&mut self, user: String, id: String) -> Response {
        if let Some(refusal) = self.authorize("terminals", &user, true) {
            return refusal;
        }
        let tb = match self.toopher("terminals") {
            Ok(tb) => tb,
            Err(r) => return *r,
        };
        match tb.api().get_user_terminal_by_id(&id).await {
            Ok(t) if t.user.name != tb.name_of(&user) => Response::error(
                ErrorKind::NotFound,
                format!("terminal {id} is not one of {user}'s"),
            ),
            Ok(t) => Response::Terminal(TerminalInfo {
                id: t.id,
                name: t.name,
                requester_specified_id: t.requester_specified_id,
                user,
            }),
            Err(e) => self.api_failure("terminal_show", &user, &e),
        }
    }

    /// Administrators only: new codes are a second factor of their own, so a user's
    /// session (or password) alone must not be able to mint them.
    pub(super) async fn regenerate_recovery_codes(&mut self, user: String) -> Response {
        if let Some(refusal) = self.authorize("recovery-codes", &user, true) {
            return refusal;
        }
        if self.d.toopher.is_some() {
            return Response::error(
                ErrorKind::Unsupported,
                "recovery codes belong to the local backend; with Toopher, use a reset link",
            );
        }
        let name = user.clone();
        match self.d.db(move |s| s.regenerate_recovery_codes(&name)).await {
            Ok(codes) => {
                self.log_admin("recovery_codes", &user, "regenerated");
                Response::RecoveryCodes {
                    user,
                    codes: codes.iter().map(|c| Secret::new(c.as_str())).collect(),
                }
            }
            Err(StoreError::NotEnrolled) => Response::error(
                ErrorKind::NotFound,
                format!("{user} has no active enrolment"),
            ),
            Err(e) => internal(&self.d, "recovery codes", &e),
        }
    }
}
