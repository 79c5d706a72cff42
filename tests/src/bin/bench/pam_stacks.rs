//! One login in-process through the real libpam for each stack, rounds interleaved:
//! `pam_start_confdir` with a private PAM directory, `pam_authenticate`, `pam_end` (so
//! each module is loaded and unloaded every time, as in sshd), a fresh account and code
//! each login. Every login must succeed with exactly the prompts the stack shows.

use crate::pool::Pool;
use crate::stats::Sample;
use crate::{accounts, memory, totp};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use toopher_tests::pam::{self, Stack};

const SECURITY: &str = "/lib/x86_64-linux-gnu/security";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Permit,
    Oath,
    Google,
    Toopher,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Permit, Kind::Oath, Kind::Google, Kind::Toopher];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Permit => "pam_permit alone (libpam's floor)",
            Kind::Oath => "pam_oath (usersfile)",
            Kind::Google => "pam_google_authenticator (secret file per user)",
            Kind::Toopher => "pam_toopher (local backend, durable)",
        }
    }
}

/// One stack's logins: wall time and CPU time per login.
pub struct StackResult {
    pub kind: Kind,
    pub wall: Sample,
    /// CPU time of the thread that ran each login (libpam and the module).
    pub cpu: Sample,
    /// pam_toopher's: toopherd's CPU time per login (its whole process, averaged over
    /// the rounds, which only pam_toopher's logins use).
    pub daemon_cpu: Option<Duration>,
}

/// The stacks and the per-account files of the in-process peers.
pub struct Stacks {
    work: tempfile::TempDir,
    permit: Stack,
    oath: Stack,
    google: Stack,
    toopher: Stack,
    /// Per round, the secret of that round's pam_oath and pam_google_authenticator account.
    secrets: Vec<Vec<u8>>,
}

fn module(name: &str) -> String {
    let p = Path::new(SECURITY).join(name);
    assert!(
        p.exists(),
        "{} is missing (scripts/bench installs libpam-oath and libpam-google-authenticator)",
        p.display()
    );
    p.display().to_string()
}

impl Stacks {
    /// Stacks for `rounds` logins each; account i of round i. The pam_oath usersfile and
    /// the google-authenticator files are written as their own tools write them.
    pub fn new(rounds: usize, toopherd_socket: &Path) -> Stacks {
        let work = tempfile::Builder::new()
            .prefix("bench-pam-")
            .tempdir()
            .expect("tempdir");
        let oath_users = work.path().join("users.oath");
        let google_dir = work.path().join("google");
        std::fs::create_dir(&google_dir).expect("mkdir");
        std::fs::set_permissions(&google_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let mut users = String::new();
        let mut secrets = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let name = accounts::name(i);
            let secret = totp::random_secret();
            // oathtool's usersfile format: TOTP, 30 s steps, 6 digits, no PIN.
            users.push_str(&format!("HOTP/T30/6\t{name}\t-\t{}\n", totp::hex(&secret)));
            // What `google-authenticator -t -d -f -r 3 -R 30 -w 3` writes, with five
            // emergency codes.
            let scratch: String = (0..5)
                .map(|k| format!("{:08}\n", 10_000_000 + (i * 7 + k) * 1_234_567 % 89_999_999))
                .collect();
            let file = google_dir.join(&name);
            std::fs::write(
                &file,
                format!(
                    "{}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n{scratch}",
                    totp::base32_encode(&secret)
                ),
            )
            .expect("google secret");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
            secrets.push(secret);
        }
        std::fs::write(&oath_users, users).expect("usersfile");
        std::fs::set_permissions(&oath_users, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let permit = Stack::new(
            "bench",
            &format!("auth required {}\n", module("pam_permit.so")),
        );
        let oath = Stack::new(
            "bench",
            &format!(
                "auth required {} usersfile={} window=3 digits=6\n",
                module("pam_oath.so"),
                oath_users.display()
            ),
        );
        // user=root: the secret files are root's; no per-user home directory.
        let google = Stack::new(
            "bench",
            &format!(
                "auth required {} secret={}/${{USER}} user=root\n",
                module("pam_google_authenticator.so"),
                google_dir.display()
            ),
        );
        let toopher = Stack::new(
            "bench",
            &format!(
                "auth required {} socket={}\n",
                toopher_tests::module_path().display(),
                toopherd_socket.display()
            ),
        );
        Stacks {
            work,
            permit,
            oath,
            google,
            toopher,
            secrets,
        }
    }

    pub fn rounds(&self) -> usize {
        self.secrets.len()
    }

    /// One login of `kind` for round `i`, timed from pam_start to pam_end: its wall time
    /// and the CPU time of the thread that ran it (libpam and the module, user and system).
    fn login(&self, kind: Kind, i: usize, pool: &Pool) -> (Duration, Duration) {
        let name = accounts::name(i);
        let (stack, code, user, prompts) = match kind {
            Kind::Permit => (&self.permit, String::new(), None, 0),
            Kind::Oath => (
                &self.oath,
                totp::code(&self.secrets[i], totp::current_step()),
                None,
                1,
            ),
            Kind::Google => (
                &self.google,
                totp::code(&self.secrets[i], totp::current_step()),
                None,
                1,
            ),
            Kind::Toopher => {
                let (u, code) = pool.take();
                (&self.toopher, code, Some(u), 1)
            }
        };
        let login_name = user.as_ref().map_or(name.as_str(), |u| u.name.as_str());
        let cpu = thread_cpu_time();
        let start = Instant::now();
        let (rc, shown) = pam::authenticate(stack, login_name, &code);
        let took = start.elapsed();
        let cpu = thread_cpu_time().saturating_sub(cpu);
        assert_eq!(
            (rc, shown),
            (pam::PAM_SUCCESS, prompts),
            "{} login of {login_name} failed (PAM result, prompts)",
            kind.label()
        );
        if let Some(u) = user {
            pool.give_back(u);
        }
        (took, cpu)
    }

    /// `rounds` rounds, each one login per stack, the order rotating every round. One
    /// untimed round first warms libpam, the page cache and toopherd (`toopherd`, its
    /// pid: its CPU time over the timed rounds is pam_toopher's logins').
    pub fn run(&self, pool: &Pool, toopherd: u32) -> Vec<StackResult> {
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); Kind::ALL.len()];
        let mut cpus: Vec<Vec<Duration>> = vec![Vec::new(); Kind::ALL.len()];
        let mut daemon_before = Duration::ZERO;
        for i in 0..self.rounds() {
            if i == 1 {
                daemon_before = memory::cpu_time(toopherd);
            }
            for k in 0..Kind::ALL.len() {
                let idx = (i + k) % Kind::ALL.len();
                let (t, cpu) = self.login(Kind::ALL[idx], i, pool);
                if i > 0 {
                    times[idx].push(t);
                    cpus[idx].push(cpu);
                }
            }
        }
        let timed = self.rounds().saturating_sub(1).max(1);
        let daemon_per_login =
            memory::cpu_time(toopherd).saturating_sub(daemon_before) / timed as u32;
        let _ = &self.work;
        Kind::ALL
            .iter()
            .zip(times.into_iter().zip(cpus))
            .map(|(k, (t, c))| StackResult {
                kind: *k,
                wall: Sample::new(t),
                cpu: Sample::new(c),
                daemon_cpu: (*k == Kind::Toopher).then_some(daemon_per_login),
            })
            .collect()
    }
}

/// CPU time of the calling thread so far (user and system).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}
