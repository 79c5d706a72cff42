//! The decision order, rule by rule, against memberships from a fake account database.

use super::config::GroupName;
use super::grace::Place;
use super::groups::fake::FakeDb;
use super::groups::{Membership, membership};
use super::rules::{Enrolment, Facts, Grant, Outcome, Policy, Reason, Rule, Stage, Strength};
use super::{PolicyConfig, warnings};
use crate::config::Availability;

const NOW: u64 = 1_000_000;

fn policy(text: &str) -> Policy {
    let config: PolicyConfig = toml::from_str(text).expect("policy parses");
    Policy::new(config, Availability::Required)
}

/// admins 500, staff 501, robots 502, ops 503; alice: primary admins; bob: primary 1000,
/// supplementary staff; carol: supplementary admins and robots; dave: primary robots;
/// erin: nothing.
fn db() -> FakeDb {
    FakeDb::default()
        .group("admins", 500)
        .group("staff", 501)
        .group("robots", 502)
        .group("ops", 503)
        .user("alice", 500, &[])
        .user("bob", 1000, &[501])
        .user("carol", 1002, &[500, 502])
        .user("dave", 502, &[])
        .user("erin", 1004, &[])
}

struct Login {
    user: &'static str,
    service: &'static str,
    rhost: Option<&'static str>,
    suspended: bool,
    grace: Option<Grant>,
}

fn login(user: &'static str) -> Login {
    Login {
        user,
        service: "sshd",
        rhost: None,
        suspended: false,
        grace: None,
    }
}

impl Login {
    fn service(mut self, s: &'static str) -> Self {
        self.service = s;
        self
    }
    fn from(mut self, rhost: &'static str) -> Self {
        self.rhost = Some(rhost);
        self
    }
    fn suspended(mut self) -> Self {
        self.suspended = true;
        self
    }
    fn grace(mut self, age: u64, place: Place) -> Self {
        self.grace = Some(Grant {
            at: NOW - age,
            place,
        });
        self
    }

    /// The policy's stage with memberships resolved like toopherd does; checks that the
    /// explanation reaches the same stage.
    fn stage(&self, p: &Policy) -> Stage {
        let groups = membership(&db(), self.user, p.config().group_names());
        self.stage_with(p, &groups)
    }

    fn stage_with(&self, p: &Policy, groups: &Membership) -> Stage {
        let facts = Facts {
            user: self.user,
            service: self.service,
            rhost: self.rhost,
            groups,
            suspended: self.suspended,
            grace: self.grace.clone(),
            now: NOW,
        };
        let stage = p.requirement(&facts);
        let explained = p.explain(&facts);
        assert_eq!(explained.stage, stage, "explain agrees with the decision");
        assert!(!explained.steps.is_empty());
        stage
    }

    fn decide(&self, p: &Policy, e: Enrolment) -> (Outcome, String) {
        let d = self.stage(p).with_enrolment(e);
        (d.outcome, d.rule.name().to_owned())
    }
}

fn group(name: &str) -> GroupName {
    GroupName(name.into())
}

fn allowed(rule: Rule) -> Stage {
    Stage::Decided(super::Decision {
        rule,
        outcome: Outcome::Allowed,
        reason: None,
    })
}

fn needs(rule: Rule, strength: Strength) -> Stage {
    Stage::NeedsFactor { rule, strength }
}

const GROUPS: &str = "required_groups = [\"admins\"]\nexempt_groups = [\"robots\"]\n\
                      available_groups = [\"staff\"]\n";

#[test]
fn defaults_need_a_second_factor_from_everyone() {
    let p = policy("");
    assert_eq!(
        login("erin").stage(&p),
        needs(
            Rule::Availability(Availability::Required),
            Strength::Required
        )
    );
    assert_eq!(
        login("erin").decide(&p, Enrolment::NotEnrolled),
        (Outcome::Denied, "availability".into())
    );
    assert_eq!(
        login("erin").decide(&p, Enrolment::Enrolled),
        (Outcome::Challenge, "availability".into())
    );
    // The top-level key still works, and [policy] availability overrides it.
    let config: PolicyConfig = toml::from_str("").unwrap();
    let p = Policy::new(config, Availability::Available);
    assert_eq!(
        login("erin").decide(&p, Enrolment::NotEnrolled),
        (Outcome::Allowed, "availability".into())
    );
    let config: PolicyConfig = toml::from_str("availability = \"required\"").unwrap();
    let p = Policy::new(config, Availability::Available);
    assert_eq!(p.availability(), Availability::Required);
}

#[test]
fn each_group_rule_with_primary_and_supplementary_membership() {
    let p = policy(GROUPS);
    // Primary group admins / supplementary staff / primary robots.
    assert_eq!(
        login("alice").stage(&p),
        needs(Rule::RequiredGroup(group("admins")), Strength::Required)
    );
    assert_eq!(
        login("bob").stage(&p),
        needs(Rule::AvailableGroup(group("staff")), Strength::Available)
    );
    assert_eq!(
        login("dave").stage(&p),
        allowed(Rule::ExemptGroup(group("robots")))
    );
    assert_eq!(
        login("erin").stage(&p),
        needs(
            Rule::Availability(Availability::Required),
            Strength::Required
        )
    );
    // Supplementary memberships count the same: a config naming bob's primary group.
    let p2 = policy("exempt_groups = [\"staff\"]\nrequired_groups = [\"robots\"]\n");
    assert_eq!(
        login("bob").stage(&p2),
        allowed(Rule::ExemptGroup(group("staff")))
    );
    assert_eq!(
        login("carol").stage(&p2),
        needs(Rule::RequiredGroup(group("robots")), Strength::Required)
    );

    // available_groups: with a factor it is used, without one the login passes.
    assert_eq!(
        login("bob").decide(&p, Enrolment::Enrolled),
        (Outcome::Challenge, "available_group".into())
    );
    assert_eq!(
        login("bob").decide(&p, Enrolment::NotEnrolled),
        (Outcome::Allowed, "available_group".into())
    );
    // required_groups: without a factor denied, even when the default is available.
    let config: PolicyConfig = toml::from_str(GROUPS).unwrap();
    let lax = Policy::new(config, Availability::Available);
    let d = login("alice")
        .stage(&lax)
        .with_enrolment(Enrolment::NotEnrolled);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Denied, Some(Reason::NotEnrolled))
    );
    assert_eq!(
        d.log_fields(),
        "outcome=denied rule=required_group group=admins reason=not_enrolled"
    );
}

#[test]
fn required_wins_over_exempt() {
    // carol is in admins (required) and robots (exempt).
    let p = policy(GROUPS);
    assert_eq!(
        login("carol").stage(&p),
        needs(Rule::RequiredGroup(group("admins")), Strength::Required)
    );
    // Also when one group is in both lists.
    let p = policy("required_groups = [\"robots\"]\nexempt_groups = [\"robots\"]\n");
    assert_eq!(
        login("dave").stage(&p),
        needs(Rule::RequiredGroup(group("robots")), Strength::Required)
    );
}

#[test]
fn a_failed_group_lookup_needs_a_second_factor() {
    let p = policy(GROUPS);
    let unknown = Membership::Unknown("directory unreachable".into());
    let l = login("dave").from("10.1.2.3");
    assert_eq!(
        l.stage_with(&p, &unknown),
        needs(Rule::GroupLookupFailed, Strength::Required)
    );
    // A user the system does not know is no member of exempt_groups either.
    assert_eq!(
        login("mallory").stage(&p),
        needs(Rule::GroupLookupFailed, Strength::Required)
    );
    // Without group rules the membership is never looked at.
    let p = policy("");
    assert_eq!(
        login("mallory").stage_with(&p, &unknown),
        needs(
            Rule::Availability(Availability::Required),
            Strength::Required
        )
    );
}

#[test]
fn trusted_networks() {
    let p = policy("trusted_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n");
    let trusted = |n: &str| {
        allowed(Rule::TrustedNetwork(
            super::network::Network::parse(n).unwrap(),
        ))
    };
    let default = needs(
        Rule::Availability(Availability::Required),
        Strength::Required,
    );
    assert_eq!(
        login("erin").from("10.1.2.3").stage(&p),
        trusted("10.0.0.0/8")
    );
    assert_eq!(login("erin").from("11.1.2.3").stage(&p), default);
    assert_eq!(
        login("erin").from("2001:db8::5").stage(&p),
        trusted("2001:db8::/32")
    );
    assert_eq!(login("erin").from("2001:db9::5").stage(&p), default);
    assert_eq!(
        login("erin").from("::ffff:10.1.2.3").stage(&p),
        trusted("10.0.0.0/8")
    );
    // Never a host name (even one that resolves into the network), never an empty rhost.
    assert_eq!(login("erin").from("localhost").stage(&p), default);
    assert_eq!(login("erin").from("10.1.2.3.nip.io").stage(&p), default);
    assert_eq!(login("erin").from("").stage(&p), default);
    assert_eq!(login("erin").stage(&p), default);
    let d = login("erin")
        .from("10.1.2.3")
        .stage(&p)
        .with_enrolment(Enrolment::Enrolled);
    assert_eq!(
        d.log_fields(),
        "outcome=allowed rule=trusted_network network=10.0.0.0/8"
    );
    // Not for a required group.
    let p = policy("trusted_networks = [\"10.0.0.0/8\"]\nrequired_groups = [\"admins\"]\n");
    assert_eq!(
        login("alice").from("10.1.2.3").stage(&p),
        needs(Rule::RequiredGroup(group("admins")), Strength::Required)
    );
}

#[test]
fn per_service_overrides() {
    let p = policy(
        "trusted_networks = [\"10.0.0.0/8\"]\ngrace_period = 600\nexempt_groups = [\"robots\"]\n\
         required_groups = [\"admins\"]\n\
         [services.sudo]\nrequired = true\ngrace_period = 0\n\
         [services.login]\nrequired = false\n\
         [services.sshd]\ntrusted_networks = [\"192.0.2.0/24\"]\n\
         [services.su]\ntrusted_networks = []\ngrace_period = 60\n",
    );
    let place = Place::Rhost("10.1.2.3".parse().unwrap());
    // sudo: required for everyone, exempt groups included; no grace.
    assert_eq!(
        login("dave").service("sudo").stage(&p),
        needs(Rule::ServiceRequired, Strength::Required)
    );
    assert_eq!(
        login("erin")
            .service("sudo")
            .from("10.1.2.3")
            .grace(5, place)
            .stage(&p),
        needs(Rule::ServiceRequired, Strength::Required)
    );
    assert_eq!(p.grace_period("sudo"), 0);
    // login: exempt, except for a required group.
    assert_eq!(
        login("erin").service("login").stage(&p),
        allowed(Rule::ServiceExempt)
    );
    assert_eq!(
        login("alice").service("login").stage(&p),
        needs(Rule::RequiredGroup(group("admins")), Strength::Required)
    );
    // sshd: its own list replaces the global one.
    assert_eq!(
        login("erin").service("sshd").from("10.1.2.3").stage(&p),
        needs(
            Rule::Availability(Availability::Required),
            Strength::Required
        )
    );
    assert!(matches!(
        login("erin").service("sshd").from("192.0.2.9").stage(&p),
        Stage::Decided(d) if d.rule.name() == "trusted_network"
    ));
    // su: no trusted networks; its own grace period.
    assert_eq!(
        login("erin").service("su").from("10.1.2.3").stage(&p),
        needs(
            Rule::Availability(Availability::Required),
            Strength::Required
        )
    );
    assert!(matches!(
        login("erin").service("su").grace(59, Place::Session(4)).stage(&p),
        Stage::Decided(d) if d.rule == Rule::GracePeriod { age: 59, period: 60 }
    ));
    assert!(matches!(
        login("erin")
            .service("su")
            .grace(61, Place::Session(4))
            .stage(&p),
        Stage::NeedsFactor { .. }
    ));
    // Any other service: the global settings.
    assert!(matches!(
        login("erin").service("cron").from("10.1.2.3").stage(&p),
        Stage::Decided(d) if d.rule.name() == "trusted_network"
    ));
    assert_eq!(p.grace_period("cron"), 600);
}

#[test]
fn grace_period() {
    let p = policy("grace_period = 300\nrequired_groups = [\"admins\"]\n");
    let place = Place::Rhost("10.1.2.3".parse().unwrap());
    let d = login("erin").from("10.1.2.3").grace(300, place).stage(&p);
    assert_eq!(
        d,
        allowed(Rule::GracePeriod {
            age: 300,
            period: 300
        })
    );
    assert!(matches!(
        login("erin").from("10.1.2.3").grace(301, place).stage(&p),
        Stage::NeedsFactor { .. }
    ));
    // A grant dated after now (the clock went back) does not count.
    let mut future = login("erin").from("10.1.2.3");
    future.grace = Some(Grant {
        at: NOW + 10,
        place,
    });
    assert!(matches!(future.stage(&p), Stage::NeedsFactor { .. }));
    // A grace is a second factor, not an exemption: it counts for required groups too.
    assert_eq!(
        login("alice").grace(10, Place::Session(3)).stage(&p),
        allowed(Rule::GracePeriod {
            age: 10,
            period: 300
        })
    );
    // Off by default.
    assert!(matches!(
        login("erin").grace(1, Place::Session(3)).stage(&policy("")),
        Stage::NeedsFactor { .. }
    ));
}

#[test]
fn suspension_beats_every_allowance() {
    let p = policy(
        "exempt_groups = [\"robots\"]\ntrusted_networks = [\"10.0.0.0/8\"]\ngrace_period = 60\n",
    );
    for l in [
        login("dave").suspended(),
        login("erin").from("10.1.2.3").suspended(),
        login("erin").grace(1, Place::Session(1)).suspended(),
    ] {
        let d = l.stage(&p).with_enrolment(Enrolment::Enrolled);
        assert_eq!((d.outcome, &d.rule), (Outcome::Denied, &Rule::Suspended));
        assert_eq!(
            d.log_fields(),
            "outcome=denied rule=suspended reason=user_disabled"
        );
    }
}

#[test]
fn explanations_say_why() {
    let p = policy(
        "trusted_networks = [\"10.0.0.0/8\"]\nexempt_groups = [\"robots\"]\n\
         [services.sudo]\nrequired = true\n",
    );
    let groups = membership(&db(), "erin", p.config().group_names());
    let facts = Facts {
        user: "erin",
        service: "sshd",
        rhost: Some("office.example.com"),
        groups: &groups,
        suspended: false,
        grace: None,
        now: NOW,
    };
    let e = p.explain(&facts);
    let text = e.steps.join("\n");
    assert!(text.contains("erin is in none of exempt_groups"), "{text}");
    assert!(text.contains("host names are never trusted"), "{text}");
    assert!(
        text.contains("availability = \"required\" decides"),
        "{text}"
    );
    let facts = Facts {
        service: "sudo",
        rhost: Some("10.1.2.3"),
        ..facts
    };
    let text = p.explain(&facts).steps.join("\n");
    assert!(text.contains("service sudo has required = true"), "{text}");
    assert!(text.contains("do not apply to a required login"), "{text}");
}

#[test]
fn warnings_name_unknown_groups_and_dead_settings() {
    let config: PolicyConfig = toml::from_str(
        "required_groups = [\"admnis\"]\nexempt_groups = [\"robots\"]\n\
         [services.sudo]\nrequired = true\ntrusted_networks = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let w = warnings(&config, &db());
    assert_eq!(w.len(), 3, "{w:?}");
    assert_eq!(w[0], "group admnis is not known to this system");
    assert!(w[1].contains("never apply"), "{w:?}");
    assert!(w[2].contains("sudo-i"), "{w:?}");
    let config: PolicyConfig = toml::from_str(GROUPS).unwrap();
    assert!(warnings(&config, &db()).is_empty());
}

#[test]
fn the_policy_table_lives_in_toopherd_toml() {
    use crate::config::Config;
    let c = Config::parse(
        "availability = \"available\"\n[policy]\nexempt_groups = [\"robots\"]\n\
         [policy.services.sudo]\nrequired = true\n",
    )
    .unwrap();
    let p = Policy::new(c.policy.clone(), c.availability);
    assert_eq!(
        p.availability(),
        Availability::Available,
        "the top-level key still works"
    );
    assert_eq!(c.policy.exempt_groups, vec![group("robots")]);
    let c = Config::parse("[policy]\navailability = \"required\"\n").unwrap();
    assert_eq!(
        Policy::new(c.policy, c.availability).availability(),
        Availability::Required
    );
    let e = Config::parse("[policy]\ngrace_period = 100000\n").unwrap_err();
    assert!(
        e.contains("line 2") && e.contains("grace_period") && e.contains("at most a day"),
        "{e}"
    );
    let e = Config::parse("\n[policy.services.sshd]\ntrusted_networks = [\"10.0.0.1/8\"]\n")
        .unwrap_err();
    assert!(
        e.contains("line 3") && e.contains("did you mean \"10.0.0.0/8\""),
        "{e}"
    );
    assert_eq!(Config::parse("").unwrap().policy, PolicyConfig::default());
}

/// A required group NSS answers "no such group" for (a directory group while sssd or LDAP
/// is down returns NOTFOUND, not an error) must not silently stop requiring, nor let the
/// user's local exempt group win (review of issue 12).
#[test]
fn a_required_group_nss_cannot_find_is_membership_unknown() {
    let p = policy("required_groups = [\"ldap-admins\"]\nexempt_groups = [\"robots\"]\n");
    // dave is in robots; "ldap-admins" is not in the database, as if unreachable.
    let stage = login("dave").stage(&p);
    assert_eq!(stage, needs(Rule::GroupLookupFailed, Strength::Required));
    assert_eq!(
        login("dave").decide(&p, Enrolment::NotEnrolled),
        (Outcome::Denied, "group_lookup_failed".to_owned())
    );
    // Still: being in a required group that is found decides first.
    let p = policy("required_groups = [\"admins\", \"ldap-admins\"]\n");
    assert_eq!(
        login("alice").stage(&p),
        needs(Rule::RequiredGroup(group("admins")), Strength::Required)
    );
    // An exempt or available group NSS cannot find just has no members.
    let p = policy(
        "exempt_groups = [\"ldap-robots\"]\navailable_groups = [\"ldap-staff\"]\n\
         availability = \"available\"\n",
    );
    assert_eq!(
        login("erin").stage(&p),
        needs(
            Rule::Availability(Availability::Available),
            Strength::Available
        )
    );
    let explained = {
        let p = policy("required_groups = [\"ldap-admins\"]\n");
        let groups = membership(&db(), "erin", p.config().group_names());
        p.explain(&Facts {
            user: "erin",
            service: "sshd",
            rhost: None,
            groups: &groups,
            suspended: false,
            grace: None,
            now: NOW,
        })
        .steps
        .join("\n")
    };
    assert!(
        explained.contains("required group ldap-admins is not known to this system"),
        "{explained}"
    );
}

/// `required = true` means a second factor every time: a service that says so inherits no
/// grace period, and has one only when it sets its own (review of issue 12).
#[test]
fn a_required_service_has_no_inherited_grace() {
    let p = policy("grace_period = 300\n[services.sudo]\nrequired = true\n");
    assert_eq!(p.grace_period("sudo"), 0);
    assert_eq!(p.grace_period("sshd"), 300);
    assert_eq!(
        login("erin")
            .service("sudo")
            .grace(10, Place::Session(4))
            .stage(&p),
        needs(Rule::ServiceRequired, Strength::Required)
    );
    // Its own grace_period still counts.
    let p = policy("grace_period = 300\n[services.sudo]\nrequired = true\ngrace_period = 60\n");
    assert_eq!(p.grace_period("sudo"), 60);
    assert_eq!(
        login("erin")
            .service("sudo")
            .grace(10, Place::Session(4))
            .stage(&p),
        allowed(Rule::GracePeriod {
            age: 10,
            period: 60
        })
    );
    // required = false (exempt) and other overrides keep the global period.
    let p = policy("grace_period = 300\n[services.su]\ntrusted_networks = []\n");
    assert_eq!(p.grace_period("su"), 300);
}
