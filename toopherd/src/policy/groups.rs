//! Which of the policy's groups a user is in: the primary group and every supplementary
//! group (getgrouplist(3)), compared by gid so a group known under two names still counts.
//! Lookups go through NSS and may ask a directory: call them off the async workers.

use super::config::GroupName;
use std::collections::BTreeSet;
use std::ffi::CString;

/// The account database, as a trait so the rules can be tested without real groups.
pub trait GroupDb {
    /// The primary gid of `user`; `Ok(None)` when there is no such user.
    fn primary_gid(&self, user: &str) -> Result<Option<u32>, String>;
    /// Every gid `user` is a member of, `primary` included (getgrouplist(3)).
    fn group_list(&self, user: &str, primary: u32) -> Result<Vec<u32>, String>;
    /// The gid of a group; `Ok(None)` when the system does not know the name.
    fn gid_of(&self, group: &str) -> Result<Option<u32>, String>;
}

/// The system's account database (NSS).
pub struct Nss;

impl GroupDb for Nss {
    fn primary_gid(&self, user: &str) -> Result<Option<u32>, String> {
        nix::unistd::User::from_name(user)
            .map(|u| u.map(|u| u.gid.as_raw()))
            .map_err(|e| format!("looking up user {user}: {e}"))
    }

    fn group_list(&self, user: &str, primary: u32) -> Result<Vec<u32>, String> {
        let name = CString::new(user).map_err(|_| "user name with a NUL byte".to_owned())?;
        nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(primary))
            .map(|gids| gids.into_iter().map(|g| g.as_raw()).collect())
            .map_err(|e| format!("getgrouplist for {user}: {e}"))
    }

    fn gid_of(&self, group: &str) -> Result<Option<u32>, String> {
        nix::unistd::Group::from_name(group)
            .map(|g| g.map(|g| g.gid.as_raw()))
            .map_err(|e| format!("looking up group {group}: {e}"))
    }
}

/// The policy's groups a user is in, or why that could not be found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Known(BTreeSet<GroupName>),
    /// The user's groups are known, but NSS did not find some configured groups (`missing`):
    /// a typo, or a directory group while the directory is unreachable (which NSS often
    /// answers as "no such group", not as an error). Such a group has no members for
    /// `exempt_groups` and `available_groups`; for `required_groups` its membership is
    /// unknown, and the login needs a second factor (`group_lookup_failed`): fail closed.
    Unresolved {
        member_of: BTreeSet<GroupName>,
        missing: BTreeSet<GroupName>,
    },
    /// The user or a group could not be looked up: no group rule can be trusted, so the
    /// login needs a second factor (rule `group_lookup_failed`).
    Unknown(String),
}

impl Membership {
    /// For policies without group rules: nothing to look up.
    pub fn none() -> Membership {
        Membership::Known(BTreeSet::new())
    }

    /// The first of `groups` the user is in.
    pub fn first_of<'a>(&self, groups: &'a [GroupName]) -> Option<&'a GroupName> {
        match self {
            Membership::Known(set) | Membership::Unresolved { member_of: set, .. } => {
                groups.iter().find(|g| set.contains(*g))
            }
            Membership::Unknown(_) => None,
        }
    }

    /// The first of `groups` NSS did not find (its members cannot be known).
    pub fn first_missing<'a>(&self, groups: &'a [GroupName]) -> Option<&'a GroupName> {
        match self {
            Membership::Unresolved { missing, .. } => groups.iter().find(|g| missing.contains(*g)),
            _ => None,
        }
    }
}

/// Which of `groups` `user` belongs to. A configured group the system does not know is
/// [`Membership::Unresolved`] (also reported at start, see [`unknown_groups`]); a user the
/// system does not know, or a failed lookup, is [`Membership::Unknown`].
pub fn membership<'a>(
    db: &dyn GroupDb,
    user: &str,
    groups: impl IntoIterator<Item = &'a GroupName>,
) -> Membership {
    let primary = match db.primary_gid(user) {
        Ok(Some(gid)) => gid,
        Ok(None) => return Membership::Unknown(format!("no such user: {user}")),
        Err(e) => return Membership::Unknown(e),
    };
    let gids = match db.group_list(user, primary) {
        Ok(gids) => gids,
        Err(e) => return Membership::Unknown(e),
    };
    let mut member_of = BTreeSet::new();
    let mut missing = BTreeSet::new();
    for g in groups {
        match db.gid_of(&g.0) {
            Ok(Some(gid)) if gid == primary || gids.contains(&gid) => {
                member_of.insert(g.clone());
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                missing.insert(g.clone());
            }
            Err(e) => return Membership::Unknown(e),
        }
    }
    if missing.is_empty() {
        Membership::Known(member_of)
    } else {
        Membership::Unresolved { member_of, missing }
    }
}

/// The configured group names the system does not know: a typo would otherwise make a
/// rule silently match nobody. A failed lookup is reported as its error.
pub fn unknown_groups<'a>(
    db: &dyn GroupDb,
    groups: impl IntoIterator<Item = &'a GroupName>,
) -> Vec<String> {
    groups
        .into_iter()
        .filter_map(|g| match db.gid_of(&g.0) {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!("group {g} is not known to this system")),
            Err(e) => Some(format!("group {g} could not be checked: {e}")),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod fake {
    use super::GroupDb;
    use std::collections::BTreeMap;

    /// Users with a primary gid and supplementary gids; groups by name.
    #[derive(Default)]
    pub struct FakeDb {
        pub users: BTreeMap<String, (u32, Vec<u32>)>,
        pub groups: BTreeMap<String, u32>,
        pub broken: bool,
    }

    impl FakeDb {
        pub fn user(mut self, name: &str, primary: u32, supplementary: &[u32]) -> Self {
            self.users
                .insert(name.into(), (primary, supplementary.to_vec()));
            self
        }
        pub fn group(mut self, name: &str, gid: u32) -> Self {
            self.groups.insert(name.into(), gid);
            self
        }
    }

    impl GroupDb for FakeDb {
        fn primary_gid(&self, user: &str) -> Result<Option<u32>, String> {
            Ok(self.users.get(user).map(|u| u.0))
        }
        fn group_list(&self, user: &str, primary: u32) -> Result<Vec<u32>, String> {
            if self.broken {
                return Err("directory unreachable".into());
            }
            let mut gids = vec![primary];
            gids.extend(
                self.users
                    .get(user)
                    .map(|u| u.1.clone())
                    .unwrap_or_default(),
            );
            Ok(gids)
        }
        fn gid_of(&self, group: &str) -> Result<Option<u32>, String> {
            Ok(self.groups.get(group).copied())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeDb;
    use super::*;

    fn names(list: &[&str]) -> Vec<GroupName> {
        list.iter().map(|s| GroupName((*s).into())).collect()
    }

    fn db() -> FakeDb {
        FakeDb::default()
            .group("admins", 500)
            .group("staff", 501)
            .group("wheel-alias", 500)
            .user("alice", 500, &[])
            .user("bob", 1000, &[501])
    }

    #[test]
    fn primary_and_supplementary_groups_count() {
        let wanted = names(&["admins", "staff"]);
        let Membership::Known(alice) = membership(&db(), "alice", &wanted) else {
            panic!("alice's groups are known");
        };
        assert_eq!(alice.into_iter().collect::<Vec<_>>(), names(&["admins"]));
        let Membership::Known(bob) = membership(&db(), "bob", &wanted) else {
            panic!("bob's groups are known");
        };
        assert_eq!(bob.into_iter().collect::<Vec<_>>(), names(&["staff"]));
    }

    #[test]
    fn a_group_nss_cannot_find_is_missing_not_memberless() {
        let wanted = names(&["admins", "staff", "nosuch"]);
        let m = membership(&db(), "bob", &wanted);
        assert_eq!(
            m,
            Membership::Unresolved {
                member_of: names(&["staff"]).into_iter().collect(),
                missing: names(&["nosuch"]).into_iter().collect(),
            }
        );
        assert_eq!(m.first_of(&wanted), Some(&wanted[1]));
        assert_eq!(m.first_missing(&wanted), Some(&wanted[2]));
        assert_eq!(m.first_missing(&wanted[..2]), None);
    }

    #[test]
    fn groups_compare_by_gid() {
        let m = membership(&db(), "alice", &names(&["wheel-alias"]));
        assert_eq!(
            m.first_of(&names(&["wheel-alias"])),
            Some(&names(&["wheel-alias"])[0])
        );
    }

    #[test]
    fn unknown_user_or_failed_lookup_is_unknown() {
        let wanted = names(&["admins"]);
        assert!(
            matches!(membership(&db(), "mallory", &wanted), Membership::Unknown(e) if e.contains("no such user"))
        );
        let mut broken = db();
        broken.broken = true;
        let m = membership(&broken, "alice", &wanted);
        assert!(
            matches!(&m, Membership::Unknown(e) if e.contains("unreachable")),
            "{m:?}"
        );
        assert_eq!(m.first_of(&wanted), None);
    }

    #[test]
    fn reports_unknown_group_names() {
        let r = unknown_groups(&db(), &names(&["admins", "admnis"]));
        assert_eq!(
            r,
            vec!["group admnis is not known to this system".to_owned()]
        );
    }

    #[test]
    fn the_system_database_answers_for_the_current_user() {
        // Whoever runs the tests: their own primary group, found through NSS.
        let uid = nix::unistd::getuid();
        let me = nix::unistd::User::from_uid(uid)
            .expect("passwd lookup")
            .expect("the test user has a passwd entry");
        let group = nix::unistd::Group::from_gid(me.gid)
            .expect("group lookup")
            .expect("the primary group has a name");
        let wanted = names(&[group.name.as_str(), "no-such-group-for-toopherd-tests"]);
        let m = membership(&Nss, &me.name, &wanted);
        assert_eq!(m.first_of(&wanted), Some(&wanted[0]), "{m:?}");
        assert_eq!(
            unknown_groups(&Nss, &wanted),
            vec!["group no-such-group-for-toopherd-tests is not known to this system".to_owned()]
        );
    }
}
