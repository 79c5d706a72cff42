//! Module options from the PAM line, e.g.
//! `auth required pam_toopher.so failmode=secure prompts=3 socket=/run/toopherd/toopherd.sock`.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failmode {
    /// toopherd unreachable: deny with PAM_AUTHINFO_UNAVAIL.
    Secure,
    /// toopherd unreachable: allow, and log a warning.
    Safe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub socket: PathBuf,
    pub failmode: Failmode,
    /// How many codes the person may type in one login.
    pub prompts: u32,
    pub debug: bool,
    /// Send the push at once, before the first prompt.
    pub autopush: bool,
    /// Bound on the whole wait for the phone within one login.
    pub timeout: std::time::Duration,
    /// One prompt for password and code; the password goes on to the next module as
    /// PAM_AUTHTOK (see `forward_pass`).
    pub forward_pass: bool,
    /// The module's session hook is configured (`session optional pam_toopher.so` after
    /// pam_loginuid): only then is toopherd asked for a grace bind token after a remote
    /// login passes.
    pub grace_session: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket: PathBuf::from(toopher_ipc::DEFAULT_SOCKET),
            failmode: Failmode::Secure,
            prompts: 3,
            debug: false,
            autopush: false,
            timeout: std::time::Duration::from_secs(120),
            forward_pass: false,
            grace_session: false,
        }
    }
}

pub const MAX_PROMPTS: u32 = 10;

/// Shown to the person at the prompt (unless `PAM_SILENT`) when the module's options are
/// wrong: the login fails closed, and the reason is only in the system log. It names no
/// option, since the person at the prompt may not be the administrator.
pub const MISCONFIGURED: &str = "pam_toopher is misconfigured, so this login cannot be checked; \
     an administrator can find why in the system log (journalctl, or /var/log/auth.log).";
pub const MAX_TIMEOUT_SECS: u64 = 900;

/// An option the module does not understand. The module refuses to run with it rather
/// than guess (a typo in `failmode=` must not silently change security).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError(pub String);

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Options {
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Options, OptionError> {
        let mut o = Options::default();
        for arg in args {
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            match (key, value) {
                ("debug", None) => o.debug = true,
                ("autopush", None) => o.autopush = true,
                ("forward_pass", None) => o.forward_pass = true,
                ("grace_session", None) => o.grace_session = true,
                ("timeout", Some(v)) => match v.parse::<u64>() {
                    Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => {
                        o.timeout = std::time::Duration::from_secs(n)
                    }
                    _ => {
                        return Err(OptionError(format!(
                            "invalid option {arg}: timeout must be 1 to {MAX_TIMEOUT_SECS} seconds"
                        )));
                    }
                },
                ("socket", Some(v)) if v.starts_with('/') => o.socket = PathBuf::from(v),
                ("failmode", Some("secure")) => o.failmode = Failmode::Secure,
                ("failmode", Some("safe")) => o.failmode = Failmode::Safe,
                ("prompts", Some(v)) => match v.parse::<u32>() {
                    Ok(n) if (1..=MAX_PROMPTS).contains(&n) => o.prompts = n,
                    _ => {
                        return Err(OptionError(format!(
                            "invalid option {arg}: prompts must be 1 to {MAX_PROMPTS}"
                        )));
                    }
                },
                ("socket", _) => {
                    return Err(OptionError(format!(
                        "invalid option {arg}: socket must be an absolute path"
                    )));
                }
                ("failmode", _) => {
                    return Err(OptionError(format!(
                        "invalid option {arg}: failmode must be secure or safe"
                    )));
                }
                _ => return Err(OptionError(format!("unknown option {arg}"))),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fail_closed() {
        let o = Options::parse([]).unwrap();
        assert_eq!(o.failmode, Failmode::Secure);
        assert_eq!(o.prompts, 3);
        assert_eq!(o.socket, PathBuf::from("/run/toopherd/toopherd.sock"));
        assert!(!o.autopush);
        assert!(!o.forward_pass);
        assert!(!o.grace_session);
        assert_eq!(o.timeout, std::time::Duration::from_secs(120));
    }

    #[test]
    fn parses_every_option() {
        let o = Options::parse([
            "debug",
            "socket=/tmp/x.sock",
            "failmode=safe",
            "prompts=5",
            "autopush",
            "timeout=30",
            "forward_pass",
            "grace_session",
        ])
        .unwrap();
        assert!(o.grace_session);
        assert!(o.autopush);
        assert!(o.forward_pass);
        assert_eq!(o.timeout, std::time::Duration::from_secs(30));
        assert!(o.debug);
        assert_eq!(o.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(o.failmode, Failmode::Safe);
        assert_eq!(o.prompts, 5);
    }

    #[test]
    fn the_misconfigured_notice_says_where_to_look_and_nothing_more() {
        assert!(MISCONFIGURED.contains("misconfigured"));
        assert!(MISCONFIGURED.contains("journalctl") && MISCONFIGURED.contains("auth.log"));
        assert!(!MISCONFIGURED.chars().any(|c| c.is_control()));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "failmode=open",
            "prompts=0",
            "prompts=99",
            "socket=rel",
            "nullok",
            "debug=1",
            "timeout=0",
            "timeout=901",
            "timeout=x",
            "autopush=yes",
            "forward_pass=1",
            "grace_session=yes",
        ] {
            assert!(Options::parse([bad]).is_err(), "{bad}");
        }
    }
}
