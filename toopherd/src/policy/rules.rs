//! The decision: which rule decides a login, and what it decides. Pure: every fact about
//! the login (groups, grace, suspension, enrolment) is looked up by the caller and passed
//! in, so the order below is tested as it is written and `toopherctl policy explain` runs
//! the very same code as a login.
//!
//! The order, first match wins:
//!
//! 1. `suspended`: the account's second factor was disabled by an administrator: denied.
//! 2. Who must use a second factor, whatever else applies ("required" wins over "exempt"):
//!    `service_required` (`[policy.services.NAME] required = true`), then `required_group`
//!    (`required_groups`); a failed group lookup, or a group of `required_groups` that NSS
//!    does not find, counts as required (`group_lookup_failed`).
//! 3. Exemptions, only for logins step 2 did not make required: `service_exempt`
//!    (`required = false`), `exempt_group`, `trusted_network` (rhost is an IP address in
//!    the service's trusted networks).
//! 4. `grace_period`: the user passed a second factor within the service's grace period
//!    from the same place (rhost, or audit session): allowed, also for required logins.
//!    A service with `required = true` has no grace period unless it sets its own.
//! 5. How strongly, for everyone else: `available_group`, then `availability` (the default).
//! 6. With the strength known, the enrolment decides: enrolled means a second factor
//!    (`challenge`); not enrolled is denied when required and allowed when available.

use super::config::{GroupName, PolicyConfig, ServiceName};
use super::grace::Place;
use super::groups::Membership;
use super::network::{Network, rhost_address, trusted_by};
use crate::config::Availability;

/// The policy of one toopherd, from `[policy]` and the top-level `availability` key.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    default: Availability,
}

/// What is known about a login before the backend is asked.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    pub groups: &'a Membership,
    pub suspended: bool,
    /// The user's last second factor from this login's place, from the grace book.
    pub grace: Option<Grant>,
    /// Seconds since the epoch.
    pub now: u64,
}

/// A second factor passed at `at` (seconds since the epoch) from `place`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub at: u64,
    pub place: Place,
}

/// Whether the account has a second factor it can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolment {
    Enrolled,
    NotEnrolled,
}

/// The rule that decided, named in the log line (`rule=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Suspended,
    ServiceRequired,
    RequiredGroup(GroupName),
    GroupLookupFailed,
    ServiceExempt,
    ExemptGroup(GroupName),
    TrustedNetwork(Network),
    GracePeriod { age: u64, period: u64 },
    AvailableGroup(GroupName),
    Availability(Availability),
}

impl Rule {
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Suspended => "suspended",
            Rule::ServiceRequired => "service_required",
            Rule::RequiredGroup(_) => "required_group",
            Rule::GroupLookupFailed => "group_lookup_failed",
            Rule::ServiceExempt => "service_exempt",
            Rule::ExemptGroup(_) => "exempt_group",
            Rule::TrustedNetwork(_) => "trusted_network",
            Rule::GracePeriod { .. } => "grace_period",
            Rule::AvailableGroup(_) => "available_group",
            Rule::Availability(_) => "availability",
        }
    }

    /// `rule=NAME` and what it matched, for a log line. Group names come from the
    /// configuration, which parsing made free of spaces and control characters.
    pub fn log_fields(&self) -> String {
        let name = self.name();
        match self {
            Rule::RequiredGroup(g) | Rule::ExemptGroup(g) | Rule::AvailableGroup(g) => {
                format!("rule={name} group={g}")
            }
            Rule::TrustedNetwork(n) => format!("rule={name} network={n}"),
            Rule::GracePeriod { age, period } => {
                format!("rule={name} age={age} grace_period={period}")
            }
            Rule::Availability(a) => format!("rule={name} availability={}", a.as_str()),
            _ => format!("rule={name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No second factor for this login.
    Allowed,
    /// Refused before any second factor.
    Denied,
    /// The backend asks for the second factor.
    Challenge,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Challenge => "challenge",
        }
    }
}

/// Why an `Allowed` or `Denied` did not involve a factor the account has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotEnrolled,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub rule: Rule,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
}

impl Decision {
    /// `outcome=... rule=...`, the policy's part of a log line.
    pub fn log_fields(&self) -> String {
        format!("outcome={} {}", self.outcome.as_str(), self.details())
    }

    /// `rule=...` and, when no factor of the account was involved, `reason=...`.
    pub fn details(&self) -> String {
        let reason = match self.reason {
            Some(Reason::NotEnrolled) => " reason=not_enrolled",
            Some(Reason::Suspended) => " reason=user_disabled",
            None => "",
        };
        format!("{}{reason}", self.rule.log_fields())
    }
}

/// How strongly a login that no exemption covers needs its second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// Without a second factor: denied.
    Required,
    /// Without a second factor: allowed.
    Available,
}

/// The policy's answer before the backend is asked: decided, or a second factor is needed
/// (and what happens when the account turns out to have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Decided(Decision),
    NeedsFactor { rule: Rule, strength: Strength },
}

impl Stage {
    /// The decision once the backend has said whether the account has a second factor.
    pub fn with_enrolment(self, enrolment: Enrolment) -> Decision {
        match self {
            Stage::Decided(d) => d,
            Stage::NeedsFactor { rule, strength } => {
                let (outcome, reason) = match (enrolment, strength) {
                    (Enrolment::Enrolled, _) => (Outcome::Challenge, None),
                    (Enrolment::NotEnrolled, Strength::Required) => {
                        (Outcome::Denied, Some(Reason::NotEnrolled))
                    }
                    (Enrolment::NotEnrolled, Strength::Available) => {
                        (Outcome::Allowed, Some(Reason::NotEnrolled))
                    }
                };
                Decision {
                    rule,
                    outcome,
                    reason,
                }
            }
        }
    }
}

/// A decision with the reasoning behind it, step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub stage: Stage,
    pub steps: Vec<String>,
}

/// The settings that apply to one service.
struct Effective<'a> {
    required: Option<bool>,
    trusted: &'a [Network],
    /// Where the trusted networks come from, for explanations.
    trusted_from: &'static str,
    grace: u64,
}

/// Collects the reasoning when asked to; free when not.
struct Trace(Option<Vec<String>>);

impl Trace {
    fn note(&mut self, step: impl FnOnce() -> String) {
        if let Some(steps) = self.0.as_mut() {
            steps.push(step());
        }
    }
}

impl Policy {
    pub fn new(config: PolicyConfig, top_level_availability: Availability) -> Policy {
        Policy {
            default: config.availability.unwrap_or(top_level_availability),
            config,
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The default for everyone no rule names.
    pub fn availability(&self) -> Availability {
        self.default
    }

    /// The grace period of `service` in seconds (0: off).
    pub fn grace_period(&self, service: &str) -> u64 {
        self.effective(service).grace
    }

    /// Whether any service has a grace period: otherwise no grant needs remembering.
    pub fn grace_enabled(&self) -> bool {
        self.config.longest_grace() > 0
    }

    fn effective(&self, service: &str) -> Effective<'_> {
        let over = self.config.services.get(&ServiceName(service.to_owned()));
        let (trusted, trusted_from) = match over.and_then(|o| o.trusted_networks.as_deref()) {
            Some(list) => (list, "this service's"),
            None => (self.config.trusted_networks.as_slice(), "the global"),
        };
        Effective {
            required: over.and_then(|o| o.required),
            trusted,
            trusted_from,
            // `required = true` means a second factor every time: no inherited grace, only
            // one the service sets itself.
            grace: match over {
                Some(o) if o.grace_period.is_some() => o.grace_period.map_or(0, |g| g.0),
                Some(o) if o.required == Some(true) => 0,
                _ => self.config.grace_period.0,
            },
        }
    }

    /// Steps 1 to 5 of the order (see the module documentation).
    pub fn requirement(&self, facts: &Facts) -> Stage {
        self.evaluate(facts, &mut Trace(None))
    }

    /// The whole decision, for a login whose enrolment is known.
    pub fn decide(&self, facts: &Facts, enrolment: Enrolment) -> Decision {
        self.requirement(facts).with_enrolment(enrolment)
    }

    /// [`Policy::requirement`] with the reasoning, for `toopherctl policy explain`.
    pub fn explain(&self, facts: &Facts) -> Explanation {
        let mut trace = Trace(Some(Vec::new()));
        let stage = self.evaluate(facts, &mut trace);
        Explanation {
            stage,
            steps: trace.0.unwrap_or_default(),
        }
    }

    fn evaluate(&self, f: &Facts, trace: &mut Trace) -> Stage {
        let decided = |rule, outcome, reason| {
            Stage::Decided(Decision {
                rule,
                outcome,
                reason,
            })
        };
        let user = f.user;
        let service = f.service;
        let eff = self.effective(service);
        let c = &self.config;

        // 1. An administrator's suspension beats every rule that would let the login in.
        if f.suspended {
            trace.note(|| format!("{user}'s second factor is suspended by an administrator"));
            return decided(Rule::Suspended, Outcome::Denied, Some(Reason::Suspended));
        }

        // 2. Required rules.
        // A required group NSS does not find (a directory group while the directory is
        // down often looks like that) has unknown members, not none: fail closed.
        let lookup_failed = match f.groups {
            Membership::Unknown(why) if c.uses_groups() => Some(why.clone()),
            m => m
                .first_missing(&c.required_groups)
                .map(|g| format!("required group {g} is not known to this system")),
        };
        let required = if eff.required == Some(true) {
            trace.note(|| {
                format!("service {service} has required = true: a second factor is needed whatever the groups and networks say")
            });
            Some(Rule::ServiceRequired)
        } else if let Some(g) = f.groups.first_of(&c.required_groups) {
            trace.note(|| format!("{user} is in {g}, one of required_groups"));
            Some(Rule::RequiredGroup(g.clone()))
        } else if let Some(why) = lookup_failed {
            trace.note(|| {
                format!(
                    "the groups of {user} could not be looked up ({why}): a second factor is needed"
                )
            });
            Some(Rule::GroupLookupFailed)
        } else {
            if c.required_groups.is_empty() {
                trace.note(|| "no required_groups are configured".to_owned());
            } else {
                trace.note(|| format!("{user} is in none of required_groups"));
            }
            None
        };

        // 3. Exemptions, for logins no required rule covers.
        if required.is_none() {
            if eff.required == Some(false) {
                trace.note(|| format!("service {service} has required = false: exempt"));
                return decided(Rule::ServiceExempt, Outcome::Allowed, None);
            }
            if let Some(g) = f.groups.first_of(&c.exempt_groups) {
                trace.note(|| format!("{user} is in {g}, one of exempt_groups"));
                return decided(Rule::ExemptGroup(g.clone()), Outcome::Allowed, None);
            }
            if !c.exempt_groups.is_empty() {
                trace.note(|| format!("{user} is in none of exempt_groups"));
            }
            if let Some(rule) = self.trusted_network(f, &eff, trace) {
                return decided(rule, Outcome::Allowed, None);
            }
        } else if !eff.trusted.is_empty() {
            trace.note(|| {
                "exemptions (exempt_groups, trusted_networks) do not apply to a required login"
                    .to_owned()
            });
        }

        // 4. A recent second factor from the same place.
        if let Some(rule) = grace(f, &eff, trace) {
            return decided(rule, Outcome::Allowed, None);
        }

        // 5. How strongly.
        if let Some(rule) = required {
            return Stage::NeedsFactor {
                rule,
                strength: Strength::Required,
            };
        }
        if let Some(g) = f.groups.first_of(&c.available_groups) {
            trace.note(|| {
                format!("{user} is in {g}, one of available_groups: a second factor is used when {user} has one")
            });
            return Stage::NeedsFactor {
                rule: Rule::AvailableGroup(g.clone()),
                strength: Strength::Available,
            };
        }
        let strength = match self.default {
            Availability::Required => Strength::Required,
            Availability::Available => Strength::Available,
        };
        trace.note(|| {
            format!(
                "no other rule applies: the default availability = \"{}\" decides",
                self.default.as_str()
            )
        });
        Stage::NeedsFactor {
            rule: Rule::Availability(self.default),
            strength,
        }
    }

    fn trusted_network(&self, f: &Facts, eff: &Effective, trace: &mut Trace) -> Option<Rule> {
        if eff.trusted.is_empty() {
            trace.note(|| format!("no trusted_networks apply to service {}", f.service));
            return None;
        }
        let Some(ip) = rhost_address(f.rhost) else {
            trace.note(|| match f.rhost {
                None | Some("") => "no rhost: trusted_networks do not apply".to_owned(),
                Some(h) => format!(
                    "rhost {} is not an IP address: host names are never trusted",
                    crate::logging::field(Some(h))
                ),
            });
            return None;
        };
        match trusted_by(eff.trusted, ip) {
            Some(n) => {
                trace.note(|| {
                    format!(
                        "rhost {ip} is in {n}, one of {} trusted_networks",
                        eff.trusted_from
                    )
                });
                Some(Rule::TrustedNetwork(*n))
            }
            None => {
                trace.note(|| {
                    format!(
                        "rhost {ip} is in none of {} trusted_networks",
                        eff.trusted_from
                    )
                });
                None
            }
        }
    }
}

fn grace(f: &Facts, eff: &Effective, trace: &mut Trace) -> Option<Rule> {
    let period = eff.grace;
    if period == 0 {
        trace.note(|| format!("no grace_period for service {}", f.service));
        return None;
    }
    let Some(grant) = &f.grace else {
        trace.note(|| {
            format!(
                "grace_period {period} s: no second factor of {} from this place to count",
                f.user
            )
        });
        return None;
    };
    // A grant "from the future" (the clock went back) is not trusted to be recent.
    let Some(age) = f.now.checked_sub(grant.at) else {
        trace.note(|| "grace_period: the last second factor is dated in the future (clock changed?): not counted".to_owned());
        return None;
    };
    if age > period {
        trace.note(|| {
            format!(
                "grace_period {period} s: the last second factor of {} from {} was {age} s ago",
                f.user, grant.place
            )
        });
        return None;
    }
    trace.note(|| {
        format!(
            "grace_period {period} s: {} passed a second factor {age} s ago from {}",
            f.user, grant.place
        )
    });
    Some(Rule::GracePeriod { age, period })
}
