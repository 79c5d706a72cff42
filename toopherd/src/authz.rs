//! Who may ask what: every request is judged by the peer's uid from `SO_PEERCRED`.
//! Root may act for anyone; any other uid only for its own account; administrative
//! requests (removing an account, replacing an active enrolment) need root.

use nix::unistd::{Uid, User};

#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    /// The account name of `uid`, when it has one.
    pub name: Option<String>,
}

impl Peer {
    /// Resolves the uid's name (blocking: NSS may ask a directory).
    pub fn lookup(uid: u32) -> Peer {
        let name = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        Peer { uid, name }
    }

    pub fn is_admin(&self) -> bool {
        self.uid == 0
    }

    pub fn may_act_for(&self, user: &str) -> bool {
        self.is_admin() || self.name.as_deref() == Some(user)
    }

    /// `uid=1000(bob)`, for log lines and refusals.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("uid={}({})", self.uid, crate::logging::field(Some(n))),
            None => format!("uid={}", self.uid),
        }
    }
}

/// A plausible account name: what `useradd` would accept, bounded.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '/' && c != ':')
}

/// Whether the system knows the account (blocking).
pub fn user_exists(name: &str) -> bool {
    matches!(User::from_name(name), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_or_self() {
        let root = Peer {
            uid: 0,
            name: Some("root".into()),
        };
        let bob = Peer {
            uid: 1000,
            name: Some("bob".into()),
        };
        let ghost = Peer {
            uid: 4242,
            name: None,
        };
        assert!(root.may_act_for("alice"));
        assert!(bob.may_act_for("bob"));
        assert!(!bob.may_act_for("alice"));
        assert!(!bob.is_admin());
        assert!(!ghost.may_act_for(""));
    }

    #[test]
    fn user_names() {
        assert!(valid_user_name("alice"));
        assert!(valid_user_name("first.last@example.com"));
        for bad in ["", "-rf", "a b", "a\nb", "../x", "a:b"] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
        assert!(!valid_user_name(&"x".repeat(65)));
    }
}
