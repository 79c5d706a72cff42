//! Who may ask what: every request is judged by the peer's uid from `SO_PEERCRED`.
//! Root (and members of `admin_group`) may act for anyone; any other uid only for its own
//! account; administrative requests need root or `admin_group`.

use nix::unistd::{Uid, User};

#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    /// The account name of `uid`, when it has one.
    pub name: Option<String>,
    /// Member of the configured admin group.
    pub in_admin_group: bool,
}

impl Peer {
    /// Resolves the uid's name and whether it belongs to `admin_group` (blocking: NSS may
    /// ask a directory).
    pub fn lookup(uid: u32, admin_group: Option<&str>) -> Peer {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let in_admin_group = match (&user, admin_group) {
            (Some(u), Some(group)) => in_group(u, group),
            _ => false,
        };
        Peer {
            uid,
            name: user.map(|u| u.name),
            in_admin_group,
        }
    }

    /// Root, or a member of the admin group.
    pub fn is_admin(&self) -> bool {
        self.uid == 0 || self.in_admin_group
    }

    /// Root, the admin group, or the user themselves.
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

fn in_group(user: &User, group: &str) -> bool {
    let Ok(Some(g)) = nix::unistd::Group::from_name(group) else {
        return false;
    };
    if user.gid == g.gid || g.mem.contains(&user.name) {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(user.name.as_str()) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid).is_ok_and(|gs| gs.contains(&g.gid))
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
            in_admin_group: false,
        };
        let bob = Peer {
            uid: 1000,
            name: Some("bob".into()),
            in_admin_group: false,
        };
        let ghost = Peer {
            uid: 4242,
            name: None,
            in_admin_group: false,
        };
        let admin = Peer {
            uid: 1001,
            name: Some("carol".into()),
            in_admin_group: true,
        };
        assert!(admin.is_admin() && admin.may_act_for("alice"));
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
