//! Requests about accounts the system does not have. A name with no account behind it
//! is a mistake (most often a typo), never "not enrolled": creating state for it would
//! leave a record that a later account of that name inherits. Requests that clean up
//! after a deleted account (remove, reset, suspend, unlock, status) still go through,
//! since toopherd may hold a record of it.
//!
//! The server asks [`refusal`] (through `server::known`) after authorisation and before
//! any store write or Toopher call.

/// What a request does to an account, as far as its existence matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Creates or uses second-factor state: the account must exist.
    Account,
    /// Changes state that may outlive the account (suspension): the account must exist,
    /// or toopherd must hold a record of the name (an account deleted since). A name that
    /// is neither is a typo, and suspending it would create a record.
    AccountOrRecord,
    /// Looks at or removes state that may outlive the account.
    Cleanup,
}

/// Whether a name has an account and whether toopherd holds a record of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// The system knows the account (NSS).
    pub account: bool,
    /// toopherd holds a record of the name (enrolment, pairing, suspension, activity).
    /// Only looked up for [`Need::AccountOrRecord`]; `false` otherwise.
    pub record: bool,
}

/// The need of a request, by its name as in `Request::name()` (`enroll`, `status`, ...).
/// `set_enabled` (either direction) needs the account or a record of the name, as do the
/// requests that act at the Toopher service (`pair`, `registration_approve`,
/// `terminal_create`, `reset_link`): a record of a deleted account must stay manageable
/// there.
pub fn need(request: &str, _enabling: bool) -> Need {
    match request {
        "enroll" | "activate" | "regenerate_recovery_codes" => Need::Account,
        "set_enabled" | "pair" | "registration_approve" | "terminal_create" | "reset_link" => {
            Need::AccountOrRecord
        }
        _ => Need::Cleanup,
    }
}

/// The refusal text when `request` for `user` must not go on: `presence.account` is the
/// result of an NSS lookup (`authz::user_exists`, blocking: call it from `spawn_blocking`).
///
/// Called after `authorize` (so a non-admin learns nothing about other names) and before
/// any store write, answering `AdminResponse::error(ErrorKind::NotFound, text)`.
pub fn refusal(request: &str, user: &str, enabling: bool, presence: Presence) -> Option<String> {
    match (need(request, enabling), presence) {
        (Need::Account, Presence { account: false, .. })
        | (
            Need::AccountOrRecord,
            Presence {
                account: false,
                record: false,
            },
        ) => Some(format!("no such user: {user}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEITHER: Presence = Presence {
        account: false,
        record: false,
    };
    const ACCOUNT: Presence = Presence {
        account: true,
        record: false,
    };
    const RECORD: Presence = Presence {
        account: false,
        record: true,
    };

    #[test]
    fn creating_state_needs_an_account() {
        for r in ["enroll", "activate", "regenerate_recovery_codes"] {
            assert_eq!(
                refusal(r, "nosuchuser", false, NEITHER).as_deref(),
                Some("no such user: nosuchuser"),
                "{r}"
            );
            // A record of a deleted account is no account to enrol.
            assert!(refusal(r, "ghost", false, RECORD).is_some(), "{r}");
            assert_eq!(refusal(r, "alice", false, ACCOUNT), None, "{r}");
        }
    }

    #[test]
    fn suspending_needs_an_account_or_a_record() {
        for enabling in [false, true] {
            assert_eq!(
                refusal("set_enabled", "nosuchuser", enabling, NEITHER).as_deref(),
                Some("no such user: nosuchuser")
            );
            assert_eq!(refusal("set_enabled", "ghost", enabling, RECORD), None);
            assert_eq!(refusal("set_enabled", "alice", enabling, ACCOUNT), None);
        }
    }

    #[test]
    fn the_toopher_services_requests_need_an_account_or_a_record() {
        for r in [
            "pair",
            "registration_approve",
            "terminal_create",
            "reset_link",
        ] {
            assert_eq!(
                refusal(r, "nosuchuser", false, NEITHER).as_deref(),
                Some("no such user: nosuchuser"),
                "{r}"
            );
            assert_eq!(refusal(r, "ghost", false, RECORD), None, "{r}");
            assert_eq!(refusal(r, "alice", false, ACCOUNT), None, "{r}");
        }
    }

    #[test]
    fn cleaning_up_after_a_deleted_account_is_allowed() {
        for r in ["remove", "reset", "unlock", "status", "list"] {
            assert_eq!(refusal(r, "ghost", false, NEITHER), None, "{r}");
        }
    }

    #[test]
    fn an_unknown_request_is_not_refused_here() {
        // Authorisation, not this, decides about requests it does not know.
        assert_eq!(need("something_new", false), Need::Cleanup);
    }
}
