//! Requests about accounts the system does not have. A name with no account behind it
//! is a mistake (most often a typo), never "not enrolled": creating state for it would
//! leave a record that a later account of that name inherits. Requests that clean up
//! after a deleted account (remove, reset, suspend, unlock, status) still go through,
//! since toopherd may hold a record of it.
//!
//! Not wired into the server yet; see [`refusal`] for where it belongs.

/// What a request does to an account, as far as its existence matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Creates or uses second-factor state: the account must exist.
    Account,
    /// Looks at or removes state that may outlive the account.
    Cleanup,
}

/// The need of a request, by its name as in `Request::name()` (`enroll`, `status`, ...).
/// `set_enabled` is split by direction: enabling needs the account, suspending does not.
///
/// Only the local enrolment's requests. The requests that act at the Toopher service
/// (`pair`, `registration_approve`, `terminal_create`, `reset_link`) are refused by
/// `server::known` for a name that neither the system nor toopherd knows: a record of
/// a deleted account must stay manageable there.
pub fn need(request: &str, _enabling: bool) -> Need {
    match request {
        "enroll" | "activate" | "regenerate_recovery_codes" => Need::Account,
        _ => Need::Cleanup,
    }
}

/// The refusal text when `request` for `user` must not go on: `exists` is the result of
/// an NSS lookup (`authz::user_exists`, blocking: call it from `spawn_blocking`).
///
/// Call it after `authorize` (so a non-admin learns nothing about other names) and
/// before any store access, answering `AdminResponse::error(ErrorKind::NotFound, text)`:
/// in `Conn::enroll` it replaces the existing `user_exists` check; in `activate` and
/// `regenerate_recovery_codes` it is new.
pub fn refusal(request: &str, user: &str, enabling: bool, exists: bool) -> Option<String> {
    match (need(request, enabling), exists) {
        (Need::Account, false) => Some(format!("no such user: {user}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_state_needs_an_account() {
        for r in ["enroll", "activate", "regenerate_recovery_codes"] {
            assert_eq!(
                refusal(r, "nosuchuser", false, false).as_deref(),
                Some("no such user: nosuchuser"),
                "{r}"
            );
            assert_eq!(refusal(r, "alice", false, true), None, "{r}");
        }
    }

    #[test]
    fn cleaning_up_after_a_deleted_account_is_allowed() {
        for r in ["remove", "reset", "unlock", "status", "list", "pair"] {
            assert_eq!(refusal(r, "ghost", false, false), None, "{r}");
        }
        assert_eq!(refusal("set_enabled", "ghost", false, false), None);
    }

    #[test]
    fn an_unknown_request_is_not_refused_here() {
        // Authorisation, not this, decides about requests it does not know.
        assert_eq!(need("something_new", false), Need::Cleanup);
    }
}
