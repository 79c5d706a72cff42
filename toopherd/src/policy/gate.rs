//! What the server holds: the policy, the grace book and the account database, behind
//! one small interface. The login asks [`Gate::assess`] before the backend, tells
//! [`Gate::granted`] about every passed second factor, and the admin requests clear
//! graces and ask for explanations. Calls may block on NSS: run them off the async
//! workers (`spawn_blocking`).

use super::grace::{BindError, Generation, GraceBook, Place, place_of};
use super::groups::{GroupDb, Membership, Nss, membership};
use super::rules::{Enrolment, Explanation, Facts, Grant, Policy, Stage};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// A login as the gate sees it.
#[derive(Debug, Clone, Copy)]
pub struct LoginFacts<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    /// The audit session of the PAM process (root peers only, see `session`).
    pub session: Option<u32>,
    /// The account's second factor is suspended (`toopherctl disable`).
    pub suspended: bool,
    pub now: u64,
}

pub struct Gate {
    policy: Policy,
    grace: Mutex<GraceBook>,
    db: Box<dyn GroupDb + Send + Sync>,
}

impl Gate {
    pub fn new(policy: Policy) -> Gate {
        Gate::with_db(policy, Box::new(Nss))
    }

    pub fn with_db(policy: Policy, db: Box<dyn GroupDb + Send + Sync>) -> Gate {
        Gate {
            policy,
            grace: Mutex::new(GraceBook::new()),
            db,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn book(&self) -> std::sync::MutexGuard<'_, GraceBook> {
        // The book holds no invariant a panic could break halfway: keep using it.
        self.grace.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn groups(&self, user: &str) -> Membership {
        let config = self.policy.config();
        if config.uses_groups() {
            membership(self.db.as_ref(), user, config.group_names())
        } else {
            Membership::none()
        }
    }

    fn grant_for(&self, l: &LoginFacts) -> Option<Grant> {
        let place = place_of(l.rhost, l.session)?;
        let keep = self.policy.config().longest_grace();
        if keep == 0 {
            return None;
        }
        let at = self.book().last(l.user, place, l.now, keep)?;
        Some(Grant { at, place })
    }

    /// Whether [`Gate::assess`] asks NSS (which may block: LDAP, sssd) for a login with
    /// or without an audit session: for group rules, and for the uid behind a grace by
    /// session. Without either it is computation alone.
    pub fn assess_blocks(&self, has_session: bool) -> bool {
        let config = self.policy.config();
        config.uses_groups() || (has_session && self.policy.grace_enabled())
    }

    /// The policy's answer for a login, before the backend is asked.
    pub fn assess(&self, l: &LoginFacts) -> Stage {
        let groups = self.groups(l.user);
        let facts = Facts {
            user: l.user,
            service: l.service,
            rhost: l.rhost,
            groups: &groups,
            suspended: l.suspended,
            grace: self.grant_for(l),
            now: l.now,
        };
        self.policy.requirement(&facts)
    }

    /// [`Gate::assess`] with its reasoning, without performing a login. `enrolment`
    /// completes the decision when it is known (local backend).
    pub fn explain(&self, l: &LoginFacts, enrolment: Option<Enrolment>) -> Explained {
        let groups = self.groups(l.user);
        let facts = Facts {
            user: l.user,
            service: l.service,
            rhost: l.rhost,
            groups: &groups,
            suspended: l.suspended,
            grace: self.grant_for(l),
            now: l.now,
        };
        let Explanation { stage, mut steps } = self.policy.explain(&facts);
        let lines = match (&stage, enrolment) {
            (Stage::Decided(d), _) => vec![d.log_fields()],
            (Stage::NeedsFactor { .. }, Some(e)) => {
                let d = stage.clone().with_enrolment(e);
                steps.push(match e {
                    Enrolment::Enrolled => {
                        format!("{} has a second factor: it is asked for", l.user)
                    }
                    Enrolment::NotEnrolled => format!("{} has no second factor", l.user),
                });
                vec![d.log_fields()]
            }
            (Stage::NeedsFactor { .. }, None) => {
                steps.push(format!(
                    "whether {} has a second factor is known to the backend only",
                    l.user
                ));
                [Enrolment::Enrolled, Enrolment::NotEnrolled]
                    .into_iter()
                    .map(|e| {
                        let which = match e {
                            Enrolment::Enrolled => "if enrolled",
                            Enrolment::NotEnrolled => "if not enrolled",
                        };
                        format!("{which}: {}", stage.clone().with_enrolment(e).log_fields())
                    })
                    .collect()
            }
        };
        Explained {
            decision: lines,
            steps,
        }
    }

    /// `user`'s grace generation, for a login to remember at `Begin`.
    pub fn generation(&self, user: &str) -> Generation {
        self.book().generation(user)
    }

    /// A second factor was passed: remember it for the grace period of the login's place
    /// (when any service has a grace period and the login has a place), unless the user's
    /// graces were cleared since the login began (`seen`, from [`Gate::generation`]).
    pub fn granted(&self, l: &LoginFacts, seen: Generation) {
        let keep = self.policy.config().longest_grace();
        if keep == 0 {
            return;
        }
        if let Some(place) = place_of(l.rhost, l.session) {
            self.book().record_in(l.user, seen, place, l.now, keep);
        }
    }

    /// A one-time token for the session hook of a login that passed its second factor at
    /// `granted_at`; `Ok(None)` when no service has a grace period or the user's graces
    /// were cleared since the login began (`seen`).
    pub fn token(
        &self,
        user: &str,
        seen: Generation,
        granted_at: u64,
        now: u64,
    ) -> Result<Option<Zeroizing<String>>, getrandom::Error> {
        if !self.policy.grace_enabled() {
            return Ok(None);
        }
        self.book().issue_token(user, seen, granted_at, now)
    }

    /// The session hook of a login that passed its second factor, now running inside the
    /// login's audit session `session`.
    pub fn bind(
        &self,
        token: &str,
        user: &str,
        session: u32,
        now: u64,
    ) -> Result<Place, BindError> {
        let keep = self.policy.config().longest_grace();
        self.book().bind(token, user, session, now, keep)
    }

    /// Ends every grace of `user` (disable, reset, remove, `toopherctl grace clear`).
    pub fn clear(&self, user: &str) -> usize {
        self.book().clear_user(user)
    }
}

/// An explanation for `toopherctl policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// `outcome=... rule=...`, or one line per enrolment state when it is not known.
    pub decision: Vec<String>,
    /// Why, rule by rule.
    pub steps: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Availability;
    use crate::policy::groups::fake::FakeDb;
    use crate::policy::rules::Outcome;

    fn gate(text: &str) -> Gate {
        let db = FakeDb::default()
            .group("admins", 500)
            .user("alice", 500, &[])
            .user("bob", 1000, &[]);
        Gate::with_db(
            Policy::new(toml::from_str(text).unwrap(), Availability::Required),
            Box::new(db),
        )
    }

    fn login<'a>(
        user: &'a str,
        service: &'a str,
        rhost: Option<&'a str>,
        session: Option<u32>,
        now: u64,
    ) -> LoginFacts<'a> {
        LoginFacts {
            user,
            service,
            rhost,
            session,
            suspended: false,
            now,
        }
    }

    fn rule(stage: Stage) -> &'static str {
        match stage {
            Stage::Decided(d) => d.rule.name(),
            Stage::NeedsFactor { .. } => "needs_factor",
        }
    }

    #[test]
    fn grace_same_rhost_other_rhost_expiry_other_user_and_clear() {
        let g = gate("grace_period = 300\n");
        let ssh = |user, rhost, now| login(user, "sshd", Some(rhost), None, now);
        assert_eq!(
            rule(g.assess(&ssh("bob", "10.0.0.1", 1000))),
            "needs_factor"
        );
        g.granted(&ssh("bob", "10.0.0.1", 1000), g.generation("bob"));
        assert_eq!(
            rule(g.assess(&ssh("bob", "10.0.0.1", 1200))),
            "grace_period"
        );
        assert_eq!(
            rule(g.assess(&ssh("bob", "10.0.0.2", 1200))),
            "needs_factor"
        );
        assert_eq!(
            rule(g.assess(&ssh("alice", "10.0.0.1", 1200))),
            "needs_factor"
        );
        assert_eq!(
            rule(g.assess(&ssh("bob", "10.0.0.1", 1301))),
            "needs_factor"
        );
        g.granted(&ssh("bob", "10.0.0.1", 2000), g.generation("bob"));
        assert_eq!(g.clear("bob"), 1);
        assert_eq!(
            rule(g.assess(&ssh("bob", "10.0.0.1", 2001))),
            "needs_factor"
        );
        // A suspension beats the grace even before it is cleared.
        g.granted(&ssh("bob", "10.0.0.1", 3000), g.generation("bob"));
        let mut l = ssh("bob", "10.0.0.1", 3001);
        l.suspended = true;
        assert_eq!(rule(g.assess(&l)), "suspended");
    }

    #[test]
    fn an_ssh_grant_carries_into_its_session_by_token() {
        let g = gate("grace_period = 300\n[services.sshd]\ngrace_period = 0\n");
        g.granted(
            &login("bob", "sshd", Some("10.0.0.1"), None, 1000),
            g.generation("bob"),
        );
        let token = g
            .token("bob", g.generation("bob"), 1000, 1002)
            .unwrap()
            .expect("a token while some service has a grace period");
        let sudo = |session, now| login("bob", "sudo", None, Some(session), now);
        assert_eq!(rule(g.assess(&sudo(7, 1010))), "needs_factor");
        assert_eq!(g.bind(&token, "bob", 7, 1005), Ok(Place::Session(7)));
        assert_eq!(rule(g.assess(&sudo(7, 1010))), "grace_period");
        assert_eq!(
            rule(g.assess(&sudo(8, 1010))),
            "needs_factor",
            "another session"
        );
        assert_eq!(rule(g.assess(&sudo(7, 1301))), "needs_factor", "expired");
        // sshd itself has no grace here.
        assert_eq!(
            rule(g.assess(&login("bob", "sshd", Some("10.0.0.1"), None, 1010))),
            "needs_factor"
        );
    }

    #[test]
    fn no_grace_anywhere_means_nothing_is_remembered() {
        let g = gate("");
        g.granted(&login("bob", "sudo", None, Some(3), 1), g.generation("bob"));
        assert_eq!(g.book().len(), 0);
        assert!(g.token("bob", g.generation("bob"), 1, 1).unwrap().is_none());
    }

    #[test]
    fn explanations_agree_with_assessments() {
        let g = gate("required_groups = [\"admins\"]\ntrusted_networks = [\"10.0.0.0/8\"]\n");
        let l = login("bob", "sshd", Some("10.1.1.1"), None, 5);
        let e = g.explain(&l, None);
        assert_eq!(
            e.decision,
            ["outcome=allowed rule=trusted_network network=10.0.0.0/8"]
        );
        let l = login("alice", "sshd", Some("10.1.1.1"), None, 5);
        let e = g.explain(&l, None);
        assert_eq!(
            e.decision,
            [
                "if enrolled: outcome=challenge rule=required_group group=admins",
                "if not enrolled: outcome=denied rule=required_group group=admins reason=not_enrolled"
            ]
        );
        let e = g.explain(&l, Some(Enrolment::NotEnrolled));
        let d = g.assess(&l).with_enrolment(Enrolment::NotEnrolled);
        assert_eq!(d.outcome, Outcome::Denied);
        assert_eq!(e.decision, [d.log_fields()]);
        assert!(
            e.steps.iter().any(|s| s.contains("alice is in admins")),
            "{e:?}"
        );
    }
}
