//! Real system services for the root suites: a throw-away Unix account, an OpenSSH
//! server on a loopback port and sudo, each seeing a private `/etc/pam.d` through a
//! mount namespace (`unshare -m` + a bind mount), so the machine's own PAM files are
//! never touched. Everything created here is removed on drop.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Panics unless running as root: these suites need it and must not pass silently.
pub fn require_root() {
    assert!(
        crate::is_root(),
        "this suite needs root (real sshd, sudo and accounts); scripts/test runs it only as root"
    );
}

/// The uid of an existing account.
pub fn uid_of(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no uid for {name}"))
}

/// A Unix account with a password, removed (with its home and processes) on drop.
pub struct TestUser {
    pub name: String,
    pub password: String,
}

impl TestUser {
    pub fn create(tag: &str) -> TestUser {
        require_root();
        let name = format!("tpt{tag}{}", std::process::id() % 100_000);
        let password = format!("Pw-{name}-{}", crate::otp::now() % 9973);
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", &name]));
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        writeln!(child.stdin.take().expect("stdin"), "{name}:{password}").expect("write");
        assert!(child.wait().expect("chpasswd").success());
        TestUser { name, password }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let _ = Command::new("userdel")
            .args(["-r", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A private PAM directory with one service file.
pub struct PamDir {
    pub dir: tempfile::TempDir,
}

impl PamDir {
    pub fn new(service: &str, contents: &str) -> PamDir {
        let dir = tempfile::Builder::new()
            .prefix("pam-d-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::write(dir.path().join(service), contents).expect("write");
        PamDir { dir }
    }

    /// Debian's shape: `common-auth` (pam_unix, then `requisite pam_deny.so`, so a wrong
    /// password ends the stack) followed by the second factor.
    pub fn password_then_toopher(service: &str, socket: &Path, options: &str) -> PamDir {
        PamDir::new(
            service,
            &format!(
                "auth     [success=1 default=ignore] pam_unix.so\n\
                 auth     requisite pam_deny.so\n\
                 auth     required pam_permit.so\n\
                 auth     required {module} socket={socket} {options}\n\
                 account  required pam_unix.so\n\
                 session  required pam_permit.so\n\
                 password required pam_deny.so\n",
                module = crate::module_path().display(),
                socket = socket.display(),
            ),
        )
    }

    /// `sh -c` words that run `exec_cmd` with this directory mounted over /etc/pam.d.
    fn namespaced(&self, exec_cmd: &str) -> Command {
        self.namespaced_with(exec_cmd, "")
    }

    /// Like [`PamDir::namespaced`], running the shell words `setup` in the namespace first.
    fn namespaced_with(&self, exec_cmd: &str, setup: &str) -> Command {
        let mut c = Command::new("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            &format!(
                "mount --make-rprivate / && mount --bind '{}' /etc/pam.d && {setup} exec {exec_cmd}",
                self.dir.path().display()
            ),
        ]);
        c
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// sshd on 127.0.0.1 with its own host key and config, keyboard-interactive through PAM.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    _pam: PamDir,
}

/// How the sshd of a test lets people in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshAuth {
    /// Keyboard-interactive through PAM (every prompt reaches the person).
    KeyboardInteractive,
    /// `PasswordAuthentication yes` through PAM, keyboard-interactive off: one password.
    Password,
}

impl Sshd {
    pub fn start(pam: PamDir) -> Sshd {
        Sshd::start_with(pam, SshAuth::KeyboardInteractive)
    }

    pub fn start_with(pam: PamDir, auth: SshAuth) -> Sshd {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("sshd-")
            .tempdir()
            .expect("tempdir");
        let key = dir.path().join("host_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        let port = free_port();
        let config = dir.path().join("sshd_config");
        let methods = match auth {
            SshAuth::KeyboardInteractive => {
                "KbdInteractiveAuthentication yes\nPasswordAuthentication no\n\
                 AuthenticationMethods keyboard-interactive\n"
            }
            SshAuth::Password => {
                "KbdInteractiveAuthentication no\nPasswordAuthentication yes\n\
                 AuthenticationMethods password\n"
            }
        };
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {pid}\n\
                 UsePAM yes\n{methods}\
                 PubkeyAuthentication no\n\
                 PermitRootLogin no\nStrictModes no\nLogLevel VERBOSE\nMaxAuthTries 3\n",
                key = key.display(),
                pid = dir.path().join("sshd.pid").display()
            ),
        )
        .expect("sshd_config");
        let log = std::fs::File::create(dir.path().join("sshd.log")).expect("log");
        // sshd needs its privilege separation directory /run/sshd (root's, 0755). Each
        // sshd gets a private one: a tmpfs over /run inside its own mount namespace, so
        // no test creates or removes anything in the machine's /run while others use it.
        let child = pam
            .namespaced_with(
                &format!("/usr/sbin/sshd -D -e -f '{}'", config.display()),
                "mount -t tmpfs -o mode=0755,size=4m toopher-test-run /run && \
                 mkdir -m 0755 /run/sshd &&",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen:\n{}",
                std::fs::read_to_string(dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            port,
            dir,
            child,
            _pam: pam,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Logs in with the real `ssh` client; prompts are answered in order by an askpass
    /// program (`SSH_ASKPASS_REQUIRE=force`) that records each prompt it was shown.
    pub fn login(&self, user: &str, answers: &[&str]) -> SshLogin {
        let work = tempfile::Builder::new()
            .prefix("ssh-client-")
            .tempdir()
            .expect("tempdir");
        let queue = work.path().join("answers");
        let lines: String = answers.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(&queue, lines).expect("answers");
        let body = format!("head -n 1 '{q}'\nsed -i 1d '{q}'\n", q = queue.display());
        self.run_ssh(
            user,
            work,
            &body,
            "keyboard-interactive",
            "echo SSH-LOGIN-OK",
        )
    }

    /// Like [`Sshd::login`], running `command` (which must print SSH-LOGIN-OK for `ok`)
    /// and offering `method` (`keyboard-interactive` or `password`).
    pub fn login_running(
        &self,
        user: &str,
        answers: &[&str],
        method: &str,
        command: &str,
    ) -> SshLogin {
        let work = tempfile::Builder::new()
            .prefix("ssh-client-")
            .tempdir()
            .expect("tempdir");
        let queue = work.path().join("answers");
        let lines: String = answers.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(&queue, lines).expect("answers");
        let body = format!("head -n 1 '{q}'\nsed -i 1d '{q}'\n", q = queue.display());
        self.run_ssh(user, work, &body, method, command)
    }

    /// Like [`Sshd::login`], with `answer` (shell, the prompt in `$1`) printing each answer.
    pub fn login_with(&self, user: &str, answer: &str) -> SshLogin {
        let work = tempfile::Builder::new()
            .prefix("ssh-client-")
            .tempdir()
            .expect("tempdir");
        self.run_ssh(
            user,
            work,
            answer,
            "keyboard-interactive",
            "echo SSH-LOGIN-OK",
        )
    }

    fn run_ssh(
        &self,
        user: &str,
        work: tempfile::TempDir,
        answer: &str,
        method: &str,
        command: &str,
    ) -> SshLogin {
        let prompts_file = work.path().join("prompts");
        let askpass = work.path().join("askpass");
        std::fs::write(
            &askpass,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{p}'\n{answer}",
                p = prompts_file.display()
            ),
        )
        .expect("askpass");
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let out = Command::new("timeout")
            .args(["120", "setsid", "ssh", "-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                &format!("PreferredAuthentications={method}"),
                "-o",
                "NumberOfPasswordPrompts=1",
                "-o",
                "ConnectTimeout=10",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .arg(command)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "none")
            .stdin(Stdio::null())
            .output()
            .expect("ssh");
        SshLogin {
            ok: out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("SSH-LOGIN-OK"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            prompts: std::fs::read_to_string(&prompts_file)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("sshd.pid")) {
            let _ = Command::new("kill")
                .arg(pid.trim())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[derive(Debug)]
pub struct SshLogin {
    pub ok: bool,
    /// What the remote command printed.
    pub stdout: String,
    /// Every prompt the client was shown, in order.
    pub prompts: Vec<String>,
    /// What ssh printed (PAM info and error lines arrive here).
    pub stderr: String,
}

/// A sudoers drop-in for one user, validated with `visudo -c`, removed on drop.
pub struct SudoersDropIn {
    path: PathBuf,
}

impl SudoersDropIn {
    pub fn install(user: &str, pam_service: &str) -> SudoersDropIn {
        require_root();
        let path = PathBuf::from(format!("/etc/sudoers.d/toopher-e2e-{user}"));
        let text = format!(
            "Defaults:{user} pam_service={pam_service}\nDefaults:{user} !lecture, timestamp_timeout=0, passwd_tries=1\n{user} ALL=(root) ALL\n"
        );
        let staged = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(staged.path(), &text).expect("write");
        run(Command::new("visudo")
            .args(["-c", "-q", "-f"])
            .arg(staged.path()));
        std::fs::write(&path, text).expect("drop-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).expect("chmod");
        SudoersDropIn { path }
    }
}

impl Drop for SudoersDropIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug)]
pub struct SudoRun {
    pub ok: bool,
    pub stdout: String,
    /// sudo -S prints the prompts and PAM messages here.
    pub stderr: String,
}

/// Runs `sudo -S -k <command>` as `user` with `pam` mounted over /etc/pam.d; each line of
/// `input` answers one prompt.
pub fn sudo(pam: &PamDir, user: &str, input: &[&str], command: &str) -> SudoRun {
    let mut child = pam
        .namespaced(&format!(
            "setpriv --reuid={user} --regid={user} --init-groups -- sudo -S -k {command}"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sudo");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for line in input {
            let _ = writeln!(stdin, "{line}");
        }
    }
    let out = child.wait_with_output().expect("sudo");
    SudoRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
