//! The policy: which logins need a second factor. The login asks it before the backend;
//! every decision names the rule that made it (see [`rules`] for the order).
//!
//! - [`config`]: the `[policy]` table (groups, trusted networks, grace period, services).
//! - [`network`]: CIDR networks and when an rhost is in one (IP literals only).
//! - [`groups`]: the user's groups (getgrouplist) and unknown group names.
//! - [`grace`]: the in-memory grace book and the session bind tokens.
//! - [`session`]: the audit session of the peer process.
//! - [`rules`]: the pure decision and its explanation.
//! - [`gate`]: all of it behind the one interface the server uses.

pub mod config;
pub mod gate;
pub mod grace;
pub mod groups;
pub mod network;
pub mod rules;
pub mod session;

#[cfg(test)]
mod tests;

pub use config::PolicyConfig;
pub use gate::{Explained, Gate, LoginFacts};
pub use rules::{Decision, Enrolment, Explanation, Facts, Grant, Outcome, Policy, Rule, Stage};

/// What `--check-config` and the start-up log say about the policy: configured groups the
/// system does not know (a typo would make a rule match nobody) and settings that cannot
/// apply. Looks groups up through NSS (blocking).
pub fn warnings(policy: &PolicyConfig, db: &dyn groups::GroupDb) -> Vec<String> {
    let mut all = groups::unknown_groups(db, policy.group_names());
    all.extend(policy.dead_settings());
    all
}
