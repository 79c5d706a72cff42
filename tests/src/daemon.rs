//! A real toopherd on a temporary socket and state directory, stopped on drop.

use crate::otp;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Toopherd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// Where toopherd keeps its database (inside `dir` unless given to `start_in`).
    pub state_dir: PathBuf,
    child: Option<Child>,
}

/// A user enrolled and activated through toopherctl.
pub struct Enrolled {
    pub user: String,
    pub secret: String,
    pub recovery_codes: Vec<String>,
    pub json: serde_json::Value,
    /// The last time step whose code toopherd accepted (activation uses one).
    pub last_step: u64,
}

impl Enrolled {
    /// A code toopherd has not seen yet: the step after the last accepted one, but never
    /// older than the current step (waiting for the clock when two are used in one step).
    pub fn next_code(&mut self) -> String {
        let step = (self.last_step + 1).max(otp::current_step());
        while step > otp::current_step() + 1 {
            std::thread::sleep(Duration::from_millis(250));
        }
        self.last_step = step;
        otp::totp_step(&self.secret, step)
    }
}

impl Toopherd {
    pub fn start() -> Toopherd {
        Toopherd::start_with("")
    }

    /// Starts toopherd with `extra` appended to a minimal config.
    pub fn start_with(extra: &str) -> Toopherd {
        Toopherd::start_in(None, extra)
    }

    /// Like [`Toopherd::start_with`], keeping the state in `state_dir` when given (a
    /// file system the test controls); the socket, config and log stay in a temp dir.
    pub fn start_in(state_dir: Option<&Path>, extra: &str) -> Toopherd {
        let dir = tempfile::Builder::new()
            .prefix("toopherd-test-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("run/toopherd.sock");
        let config = dir.path().join("toopherd.toml");
        let state_dir = state_dir.map_or_else(|| dir.path().join("state"), Path::to_path_buf);
        std::fs::write(
            &config,
            format!(
                "socket = \"{}\"\nstate_dir = \"{}\"\n{}{extra}\n",
                socket.display(),
                state_dir.display(),
                if extra.contains("backend =") {
                    ""
                } else {
                    "backend = \"local\"\n"
                }
            ),
        )
        .expect("write config");
        let mut d = Toopherd {
            dir,
            socket,
            config,
            state_dir,
            child: None,
        };
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(crate::artifact("toopherd"))
            .args(["--log", "stderr", "--config"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn toopherd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("toopherd exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "toopherd did not listen in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("toopherd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for toopherd to exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// SIGKILLs toopherd (no chance to finish anything) and reaps it; `spawn` starts
    /// it again on the same config and state.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The database toopherd keeps in its state directory.
    pub fn database(&self) -> PathBuf {
        self.state_dir.join("toopherd.sqlite3")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_as(&self.socket, args, None)
    }

    /// Enrols `user` with `toopherctl enroll --json` and activates it with the current code.
    pub fn enroll(&self, user: &str) -> Enrolled {
        let out = self.ctl(&["enroll", user, "--json"]);
        assert!(
            out.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("enroll --json output");
        let secret = json["secret"].as_str().expect("secret").to_string();
        let recovery_codes = json["recovery_codes"]
            .as_array()
            .expect("recovery_codes")
            .iter()
            .map(|c| c.as_str().expect("code").to_string())
            .collect();
        let step = otp::current_step();
        let code = otp::totp_step(&secret, step);
        let out = self.ctl(&["activate", user, &code]);
        assert!(
            out.status.success(),
            "activate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Enrolled {
            user: user.into(),
            secret,
            recovery_codes,
            json,
            last_step: step,
        }
    }
}

impl Drop for Toopherd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs toopherctl; with `as_uid`, as that uid and gid (through setpriv, root only).
pub fn ctl_as(socket: &Path, args: &[&str], as_uid: Option<u32>) -> Output {
    let ctl = crate::artifact("toopherctl");
    let mut cmd = match as_uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            // The account's own groups, as a login session would have them.
            let gid = std::fs::read_to_string("/etc/passwd")
                .ok()
                .and_then(|p| {
                    p.lines()
                        .map(|l| l.split(':').collect::<Vec<_>>())
                        .find(|f| f.len() > 3 && f[2] == uid.to_string())
                        .map(|f| f[3].to_string())
                })
                .unwrap_or_else(|| uid.to_string());
            let groups = if uid == 65534 {
                "--clear-groups"
            } else {
                "--init-groups"
            };
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                groups,
                "--",
            ])
            .arg(&ctl);
            c
        }
        None => Command::new(&ctl),
    };
    cmd.arg("--socket").arg(socket).args(args);
    cmd.output().expect("run toopherctl")
}

/// Runs toopherd once in the foreground with `config` and `args` (e.g. `--check-config`)
/// and returns how it ended; for refusals at start.
pub fn run_once(config: &Path, args: &[&str]) -> Output {
    Command::new(crate::artifact("toopherd"))
        .args(["--log", "stderr", "--config"])
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run toopherd")
}
