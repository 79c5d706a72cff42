//! `toopherd --check-config`: what can be known about a configuration before toopherd
//! runs with it, judged for the user toopherd runs as (its state directory, the socket's
//! directory, the admin group, the Toopher credentials), without changing anything.

use crate::config::{Backend, Config};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The account toopherd runs as, whose access is judged.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub name: String,
    pub uid: u32,
    /// Its primary and supplementary groups.
    pub gids: Vec<u32>,
}

impl ServiceUser {
    /// The packaged unit's `toopherd` user when run by root and that user exists, else
    /// whoever runs the check.
    pub fn guess() -> ServiceUser {
        use nix::unistd::{Uid, User};
        let me = Uid::effective();
        let user = if me.is_root() {
            User::from_name("toopherd").ok().flatten()
        } else {
            None
        }
        .or_else(|| User::from_uid(me).ok().flatten());
        match user {
            Some(u) => ServiceUser::of(&u),
            None => ServiceUser {
                name: format!("uid {me}"),
                uid: me.as_raw(),
                gids: vec![nix::unistd::Gid::effective().as_raw()],
            },
        }
    }

    pub fn of(u: &nix::unistd::User) -> ServiceUser {
        let mut gids = vec![u.gid.as_raw()];
        if let Ok(name) = std::ffi::CString::new(u.name.as_str())
            && let Ok(gs) = nix::unistd::getgrouplist(&name, u.gid)
        {
            gids.extend(gs.iter().map(|g| g.as_raw()));
        }
        ServiceUser {
            name: u.name.clone(),
            uid: u.uid.as_raw(),
            gids,
        }
    }

    /// Whether this user may do what `bits` (0o4 read, 0o2 write, 0o1 search) asks of a
    /// file with `meta`, by its mode (ACLs aside).
    fn may(&self, meta: &std::fs::Metadata, bits: u32) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            return true;
        }
        let shift = if meta.uid() == self.uid {
            6
        } else if self.gids.contains(&meta.gid()) {
            3
        } else {
            0
        };
        (mode >> shift) & bits == bits
    }

    fn describe(&self) -> String {
        format!("{} (uid {})", self.name, self.uid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but likely not as meant.
    Warning,
    /// toopherd would refuse to start, or a feature would fail.
    Problem,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

fn ok(text: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        text: text.into(),
    }
}
fn warning(text: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warning,
        text: text.into(),
    }
}
fn problem(text: impl Into<String>) -> Finding {
    Finding {
        level: Level::Problem,
        text: text.into(),
    }
}

/// Where the packaged unit lets toopherd write (`ProtectSystem=strict` makes the rest
/// read-only): its `StateDirectory=` and `RuntimeDirectory=`.
const UNIT_STATE_DIR: &str = "/var/lib/toopherd";
const UNIT_RUNTIME_DIR: &str = "/run/toopherd";

/// Every check, in the order a person would fix them.
pub fn check(config: &Config, who: &ServiceUser) -> Vec<Finding> {
    let mut out = vec![ok("every key is known and every value in range")];
    out.extend(state_dir(
        config.state_dir.path(),
        &config.database_path(),
        who,
    ));
    out.extend(socket_dir(config.socket.path(), who));
    out.push(admin_group(
        config.admin_group.as_ref().map(|g| g.0.as_str()),
    ));
    // The policy's groups: a warning, since a group may be created after the file is written.
    for w in crate::policy::warnings(&config.policy, &crate::policy::groups::Nss) {
        out.push(warning(w));
    }
    if config.backend == Backend::Toopher {
        out.extend(credentials(&config.toopher.credentials_path(), who));
        if let Some(ca) = &config.toopher.ca_file {
            out.push(readable("ca_file", ca.path(), who));
        }
    }
    out
}

fn state_dir(dir: &Path, db: &Path, who: &ServiceUser) -> Vec<Finding> {
    let shown = dir.display();
    let mut out = Vec::new();
    if !dir.starts_with(UNIT_STATE_DIR) {
        out.push(warning(format!(
            "state_dir {shown}: the packaged unit lets toopherd write only {UNIT_STATE_DIR}; \
             add `ReadWritePaths={shown}` with `systemctl edit toopherd`"
        )));
    }
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().unwrap_or(Path::new("/"));
            out.push(match std::fs::metadata(parent) {
                _ if dir.starts_with(UNIT_STATE_DIR) => ok(format!(
                    "state_dir {shown} does not exist yet; systemd creates it (StateDirectory=)"
                )),
                Ok(p) if who.may(&p, 0o3) => ok(format!(
                    "state_dir {shown} does not exist yet; toopherd creates it (0700)"
                )),
                _ => problem(format!(
                    "state_dir {shown} does not exist, and {} cannot create it in {}",
                    who.describe(),
                    parent.display()
                )),
            });
            return out;
        }
        Err(e) => {
            out.push(problem(format!("state_dir {shown}: {e}")));
            return out;
        }
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        out.push(problem(format!(
            "state_dir {shown} is not a directory (a symbolic link or a file)"
        )));
        return out;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        out.push(problem(format!(
            "state_dir {shown} has mode {mode:04o}: writable by group or others, and it holds \
             secrets (chmod 700 {shown})"
        )));
    } else if !who.may(&meta, 0o3) && dir.starts_with(UNIT_STATE_DIR) {
        // systemd's StateDirectory= hands it (and what is in it) to the unit's user at
        // every start; only toopherd started by hand would fail on it.
        out.push(warning(format!(
            "state_dir {shown} is owned by uid {} with mode {mode:04o}: {} cannot write it \
             until systemd's StateDirectory= hands it over at start (by hand: chown -R {}: \
             {shown})",
            meta.uid(),
            who.describe(),
            who.name
        )));
    } else if !who.may(&meta, 0o3) {
        out.push(problem(format!(
            "state_dir {shown} is owned by uid {} with mode {mode:04o}: {} cannot write it \
             (chown {}: {shown})",
            meta.uid(),
            who.describe(),
            who.name
        )));
    } else {
        out.push(ok(format!(
            "state_dir {shown}: writable by {}, mode {mode:04o}",
            who.describe()
        )));
    }
    if let Ok(m) = std::fs::symlink_metadata(db) {
        let shown = db.display();
        let mode = m.permissions().mode() & 0o7777;
        if !m.is_file() {
            out.push(problem(format!("{shown} is not a plain file")));
        } else if mode & 0o077 != 0 {
            out.push(problem(format!(
                "{shown} has mode {mode:04o}; it holds secrets and must be 0600 (chmod 600 {shown})"
            )));
        } else if !who.may(&m, 0o6) {
            out.push(problem(format!(
                "{shown} is owned by uid {}: {} cannot read and write it (chown {}: {shown})",
                m.uid(),
                who.describe(),
                who.name
            )));
        } else {
            out.push(ok(format!("database {shown}: mode {mode:04o}")));
        }
    }
    out
}

fn socket_dir(socket: &Path, who: &ServiceUser) -> Vec<Finding> {
    let Some(dir) = socket.parent() else {
        return vec![problem(format!(
            "socket {} has no directory",
            socket.display()
        ))];
    };
    let shown = dir.display();
    let mut out = Vec::new();
    if !dir.starts_with(UNIT_RUNTIME_DIR) {
        out.push(warning(format!(
            "socket {}: the packaged unit lets toopherd write only {UNIT_RUNTIME_DIR}; the \
             module's socket= option must name the same path",
            socket.display()
        )));
    }
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.push(ok(format!(
            "socket directory {shown} does not exist yet; {} creates it",
            if dir.starts_with(UNIT_RUNTIME_DIR) {
                "systemd (RuntimeDirectory=)"
            } else {
                "toopherd"
            }
        ))),
        Err(e) => out.push(problem(format!("socket directory {shown}: {e}"))),
        Ok(m) if !m.is_dir() => out.push(problem(format!("{shown} is not a directory"))),
        Ok(m) if m.uid() != 0 && m.uid() != who.uid => out.push(problem(format!(
            "socket directory {shown} is owned by uid {}; it must belong to {}",
            m.uid(),
            if who.uid == 0 {
                "root".to_string()
            } else {
                format!("root or {}", who.describe())
            }
        ))),
        Ok(m) if m.mode() & 0o022 != 0 => out.push(problem(format!(
            "socket directory {shown} has mode {:04o}: writable by group or others (chmod 755 {shown})",
            m.mode() & 0o7777
        ))),
        Ok(m) if !who.may(&m, 0o3) => out.push(problem(format!(
            "socket directory {shown}: {} cannot create the socket there",
            who.describe()
        ))),
        Ok(m) if m.mode() & 0o001 == 0 => out.push(problem(format!(
            "socket directory {shown} has mode {:04o}: users cannot reach the socket (chmod 755 {shown})",
            m.mode() & 0o7777
        ))),
        Ok(_) => out.push(ok(format!("socket directory {shown}"))),
    }
    out
}

fn admin_group(group: Option<&str>) -> Finding {
    match group {
        None => ok("admin_group is not set: only root may administer"),
        Some(g) => match nix::unistd::Group::from_name(g) {
            Ok(Some(grp)) => ok(format!(
                "admin_group {g} (gid {}): its members may administer",
                grp.gid
            )),
            Ok(None) => problem(format!(
                "admin_group {g}: no such group (create it with `groupadd {g}`, or name another)"
            )),
            Err(e) => problem(format!("admin_group {g}: cannot look it up: {e}")),
        },
    }
}

fn credentials(path: &Path, who: &ServiceUser) -> Vec<Finding> {
    let shown = path.display();
    let mut out = vec![match crate::backend::toopher::load_credentials(path) {
        Ok(_) => ok(format!(
            "credentials file {shown}: consumer_key and consumer_secret present"
        )),
        Err(e) => problem(e),
    }];
    // Under the unit with LoadCredential=, systemd hands toopherd its own copy.
    if let Ok(m) = std::fs::metadata(path)
        && !who.may(&m, 0o4)
    {
        out.push(problem(format!(
            "credentials file {shown} is owned by uid {} with mode {:04o}: {} cannot read it \
             (chown {}: {shown}, or pass it with LoadCredential=toopher:{shown})",
            m.uid(),
            m.mode() & 0o7777,
            who.describe(),
            who.name
        )));
    }
    out
}

fn readable(key: &str, path: &Path, who: &ServiceUser) -> Finding {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => problem(format!("{key} {shown} is not a file")),
        Ok(m) if who.may(&m, 0o4) => ok(format!("{key} {shown}")),
        Ok(_) => problem(format!("{key} {shown}: {} cannot read it", who.describe())),
        Err(e) => problem(format!("{key} {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn someone() -> ServiceUser {
        // Not root, so modes count; owns nothing the tests make unless chowned.
        ServiceUser {
            name: "svc".into(),
            uid: 4_000_123,
            gids: vec![4_000_123],
        }
    }

    fn config(dir: &Path, extra: &str) -> Config {
        Config::parse(&format!(
            "state_dir = \"{}\"\nsocket = \"{}\"\n{extra}",
            dir.join("state").display(),
            dir.join("run/toopherd.sock").display()
        ))
        .unwrap()
    }

    fn problems(f: &[Finding]) -> Vec<String> {
        f.iter()
            .filter(|f| f.level == Level::Problem)
            .map(|f| f.text.clone())
            .collect()
    }

    #[test]
    fn a_state_dir_the_service_user_cannot_write_is_a_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let me = ServiceUser::guess();
        let f = check(&config(tmp.path(), ""), &someone());
        let p = problems(&f);
        // Not owned by svc (unless the test runs as that uid, which it cannot).
        if me.uid != someone().uid {
            assert!(
                p.iter()
                    .any(|t| t.contains("cannot write") && t.contains("uid 4000123")),
                "{p:?}"
            );
        }
        // The owner itself may.
        let f = check(&config(tmp.path(), ""), &me);
        assert!(
            !problems(&f).iter().any(|t| t.contains("state_dir")),
            "{f:?}"
        );
        // Group-writable is refused whoever owns it.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();
        let p = problems(&check(&config(tmp.path(), ""), &me));
        assert!(p.iter().any(|t| t.contains("chmod 700")), "{p:?}");
    }

    #[test]
    fn a_missing_admin_group_is_a_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let p = problems(&check(
            &config(tmp.path(), "admin_group = \"no-such-group-x7\"\n"),
            &ServiceUser::guess(),
        ));
        assert!(
            p.iter()
                .any(|t| t.contains("admin_group no-such-group-x7: no such group")),
            "{p:?}"
        );
        let f = check(
            &config(tmp.path(), "admin_group = \"root\"\n"),
            &ServiceUser::guess(),
        );
        assert!(problems(&f).is_empty(), "{f:?}");
    }

    #[test]
    fn toopher_credentials_must_be_private_and_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let creds = tmp.path().join("credentials.toml");
        std::fs::write(&creds, "consumer_key = \"k\"\nconsumer_secret = \"s\"\n").unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
        let extra = format!(
            "backend = \"toopher\"\n[toopher]\ncredentials_file = \"{}\"\n",
            creds.display()
        );
        let me = ServiceUser::guess();
        let p = problems(&check(&config(tmp.path(), &extra), &me));
        assert!(p.iter().any(|t| t.contains("credentials")), "{p:?}");
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        let f = check(&config(tmp.path(), &extra), &me);
        assert!(problems(&f).is_empty(), "{f:?}");
        // Private to its owner: another service user cannot read it.
        if me.uid != 0 || someone().uid != 0 {
            let p = problems(&check(&config(tmp.path(), &extra), &someone()));
            assert!(p.iter().any(|t| t.contains("cannot read it")), "{p:?}");
        }
        assert!(!format!("{p:?}").contains("\"s\""), "a secret in a finding");
    }

    #[test]
    fn paths_outside_the_units_directories_are_warned_about() {
        let tmp = tempfile::tempdir().unwrap();
        let f = check(&config(tmp.path(), ""), &ServiceUser::guess());
        assert!(
            f.iter()
                .any(|f| f.level == Level::Warning && f.text.contains("ReadWritePaths")),
            "{f:?}"
        );
    }
}
