//! The `[policy]` table of toopherd.toml: who needs a second factor, from where, and for
//! how long one counts. Every value is checked while parsing, so a mistake is an error
//! naming the key and its line, never a silently wider policy.

use super::network::Network;
use crate::config::Availability;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// The longest grace period: one day.
pub const MAX_GRACE_PERIOD: u64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Members always need a second factor (or a grace from one): no exemption applies to
    /// them, and without a factor they are denied.
    #[serde(default)]
    pub required_groups: Vec<GroupName>,
    /// Members never need a second factor (unless a required rule also applies).
    #[serde(default)]
    pub exempt_groups: Vec<GroupName>,
    /// Members with a second factor must use it; members without one pass.
    #[serde(default)]
    pub available_groups: Vec<GroupName>,
    /// Everyone else. When unset, the top-level `availability` key (default `required`).
    #[serde(default)]
    pub availability: Option<Availability>,
    /// Logins whose `rhost` is an IP address in one of these need no second factor.
    #[serde(default)]
    pub trusted_networks: Vec<Network>,
    /// Seconds a second factor counts for later logins of the same user from the same
    /// place (0, the default, is off).
    #[serde(default)]
    pub grace_period: GracePeriod,
    /// Per PAM service overrides: `[policy.services.sudo]`.
    #[serde(default)]
    pub services: BTreeMap<ServiceName, ServicePolicy>,
}

/// `[policy.services.NAME]`: what differs for one PAM service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePolicy {
    /// `true`: every login through this service needs a second factor, whatever the groups,
    /// networks and default say. `false`: the service is exempt, except for members of
    /// `required_groups`.
    #[serde(default)]
    pub required: Option<bool>,
    /// Replaces the global list for this service; `[]` switches trusted networks off.
    #[serde(default)]
    pub trusted_networks: Option<Vec<Network>>,
    /// Replaces the global grace period for this service; `0` switches it off.
    #[serde(default)]
    pub grace_period: Option<GracePeriod>,
}

/// A group name as `groupadd` would accept it (the system may still not know it: that is
/// reported by `--check-config` and at start, see [`super::groups::unknown_groups`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupName(pub String);

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if plausible_name(&s) {
            Ok(GroupName(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "{s:?} is not a group name (1 to 64 characters, no spaces, `:`, `,` or `/`)"
            )))
        }
    }
}

impl std::fmt::Display for GroupName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A PAM service name (`sshd`, `sudo`, `login`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(pub String);

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if plausible_name(&s) {
            Ok(ServiceName(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "{s:?} is not a PAM service name"
            )))
        }
    }
}

fn plausible_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, ':' | ',' | '/'))
}

/// Seconds, `0..=86400`; 0 is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GracePeriod(pub u64);

impl<'de> Deserialize<'de> for GracePeriod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Secs;
        impl serde::de::Visitor<'_> for Secs {
            type Value = GracePeriod;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a whole number of seconds, 0 to {MAX_GRACE_PERIOD}")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GracePeriod, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(out_of_range(v))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GracePeriod, E> {
                if v <= MAX_GRACE_PERIOD {
                    Ok(GracePeriod(v))
                } else {
                    Err(E::custom(out_of_range(v)))
                }
            }
        }
        fn out_of_range(v: impl std::fmt::Display) -> String {
            format!(
                "{v} is out of range (0 to {MAX_GRACE_PERIOD} seconds, at most a day; 0 is off)"
            )
        }
        d.deserialize_i64(Secs)
    }
}

impl PolicyConfig {
    /// Every group name the policy mentions, once each, for the unknown-group report.
    pub fn group_names(&self) -> impl Iterator<Item = &GroupName> {
        let mut all: Vec<&GroupName> = self
            .required_groups
            .iter()
            .chain(&self.exempt_groups)
            .chain(&self.available_groups)
            .collect();
        all.sort();
        all.dedup();
        all.into_iter()
    }

    /// Whether any rule depends on group membership (otherwise no NSS lookup is needed).
    pub fn uses_groups(&self) -> bool {
        !(self.required_groups.is_empty()
            && self.exempt_groups.is_empty()
            && self.available_groups.is_empty())
    }

    /// The longest grace period of any service: how long a grace record can matter.
    pub fn longest_grace(&self) -> u64 {
        self.services
            .values()
            .filter_map(|s| s.grace_period)
            .map(|g| g.0)
            .chain([self.grace_period.0])
            .max()
            .unwrap_or(0)
    }

    /// Settings that parse but cannot do what they seem to say, for `--check-config` and
    /// the start-up log.
    pub fn dead_settings(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for (name, s) in &self.services {
            if s.required == Some(true)
                && s.trusted_networks.as_ref().is_some_and(|n| !n.is_empty())
            {
                notes.push(format!(
                    "[policy.services.{}] trusted_networks never apply: required = true needs a \
                     second factor from every network",
                    name.0
                ));
            }
        }
        // Debian runs `sudo -i` under its own PAM service, and `su -` / `su -l` under
        // su-l: a rule for one alone leaves the other on the global policy.
        for (set, twin, how) in [("sudo", "sudo-i", "sudo -i"), ("su", "su-l", "su -l")] {
            let has = |n: &str| self.services.contains_key(&ServiceName(n.to_owned()));
            if has(set) && !has(twin) {
                notes.push(format!(
                    "[policy.services.{set}] is set but [policy.services.{twin}] is not: where \
                     `{how}` uses the PAM service {twin} (Debian, Ubuntu), it follows the \
                     global policy"
                ));
            }
        }
        for g in &self.required_groups {
            if self.exempt_groups.contains(g) || self.available_groups.contains(g) {
                notes.push(format!(
                    "[policy] group {g} is in required_groups and in another list: \
                     required wins"
                ));
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_policy_is_the_default() {
        let p = parse("").unwrap();
        assert_eq!(p, PolicyConfig::default());
        assert!(!p.uses_groups());
        assert_eq!(p.longest_grace(), 0);
        assert_eq!(p.availability, None);
    }

    #[test]
    fn parses_every_key() {
        let p = parse(
            "required_groups = [\"admins\"]\nexempt_groups = [\"robots\", \"ci\"]\n\
             available_groups = [\"staff\"]\navailability = \"available\"\n\
             trusted_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]\ngrace_period = 300\n\
             [services.sudo]\nrequired = true\ntrusted_networks = []\ngrace_period = 0\n\
             [services.sudo-i]\nrequired = true\n\
             [services.login]\nrequired = false\ngrace_period = 86400\n",
        )
        .unwrap();
        assert_eq!(p.required_groups, vec![GroupName("admins".into())]);
        assert_eq!(p.exempt_groups.len(), 2);
        assert_eq!(p.availability, Some(Availability::Available));
        assert_eq!(p.trusted_networks.len(), 2);
        assert_eq!(p.grace_period, GracePeriod(300));
        let sudo = &p.services[&ServiceName("sudo".into())];
        assert_eq!(sudo.required, Some(true));
        assert_eq!(sudo.trusted_networks, Some(vec![]));
        assert_eq!(sudo.grace_period, Some(GracePeriod(0)));
        assert_eq!(p.longest_grace(), 86_400);
        assert!(p.uses_groups());
        let names: Vec<_> = p.group_names().map(|g| g.0.as_str()).collect();
        assert_eq!(names, ["admins", "ci", "robots", "staff"]);
        assert!(p.dead_settings().is_empty());
    }

    #[test]
    fn errors_name_the_key_and_say_why() {
        let cases = [
            ("grace_period = 86401\n", "grace_period", "at most a day"),
            ("grace_period = -1\n", "grace_period", "out of range"),
            (
                "grace_period = \"5m\"\n",
                "grace_period",
                "whole number of seconds",
            ),
            (
                "required_groups = [\"a b\"]\n",
                "required_groups",
                "not a group name",
            ),
            (
                "exempt_groups = [\"\"]\n",
                "exempt_groups",
                "not a group name",
            ),
            (
                "available_groups = \"staff\"\n",
                "available_groups",
                "sequence",
            ),
            ("availability = \"groups\"\n", "availability", "required"),
            (
                "trusted_networks = [\"10.0.0.0/33\"]\n",
                "trusted_networks",
                "prefix",
            ),
            (
                "trusted_networks = [\"10.0.0.1/8\"]\n",
                "trusted_networks",
                "10.0.0.0/8",
            ),
            (
                "trusted_networks = [\"office.example.com\"]\n",
                "trusted_networks",
                "not an IP",
            ),
            ("trusted_network = []\n", "trusted_network", "unknown field"),
            (
                "[services.sudo]\nrequire = true\n",
                "require",
                "unknown field",
            ),
            (
                "[services.sudo]\ngrace_period = 90000\n",
                "grace_period",
                "at most a day",
            ),
            (
                "[services.\"a b\"]\nrequired = true\n",
                "a b",
                "service name",
            ),
            (
                "[services.sshd]\ntrusted_networks = [\"2001:db8::1/32\"]\n",
                "trusted_networks",
                "2001:db8::/32",
            ),
        ];
        for (text, key, why) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key) && e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn reports_settings_that_cannot_apply() {
        let p = parse(
            "required_groups = [\"admins\"]\nexempt_groups = [\"admins\"]\n\
             [services.sudo]\nrequired = true\ntrusted_networks = [\"10.0.0.0/8\"]\n\
             [services.sudo-i]\nrequired = true\n",
        )
        .unwrap();
        let notes = p.dead_settings();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("policy.services.sudo"), "{notes:?}");
        assert!(notes[1].contains("required wins"), "{notes:?}");
    }

    #[test]
    fn a_rule_for_sudo_or_su_alone_hints_at_its_debian_twin() {
        let notes = parse("[services.sudo]\nrequired = true\n")
            .unwrap()
            .dead_settings();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("[policy.services.sudo-i] is not") && notes[0].contains("sudo -i"),
            "{notes:?}"
        );
        let notes = parse("[services.su]\nrequired = true\n")
            .unwrap()
            .dead_settings();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("[policy.services.su-l] is not"),
            "{notes:?}"
        );
        for both in [
            "[services.sudo]\nrequired = true\n[services.sudo-i]\nrequired = true\n",
            "[services.su]\n[services.su-l]\n",
            "[services.sudo-i]\nrequired = true\n",
        ] {
            assert!(parse(both).unwrap().dead_settings().is_empty(), "{both}");
        }
    }
}
