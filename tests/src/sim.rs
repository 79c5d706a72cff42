//! The Toopher API simulator (`toopher_sim`) running in the test process over HTTPS, and a
//! toopherd configured against it (`backend = "toopher"`, credentials file 0600, the
//! simulator's CA file).

use crate::daemon::Toopherd;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
pub use toopher_sim::{AutoAnswer, Failure, FailureRule, LogEntry, NewUser, SimHandle, SimUser};
use toopher_sim::{SimOptions, Simulator};

pub struct Sim {
    pub rt: tokio::runtime::Runtime,
    pub handle: SimHandle,
    /// Holds the credentials file.
    pub dir: tempfile::TempDir,
}

impl Sim {
    pub fn start() -> Arc<Sim> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let handle = rt
            .block_on(Simulator::start(SimOptions::default()))
            .expect("start the simulator");
        let dir = tempfile::Builder::new()
            .prefix("toopher-creds-")
            .tempdir()
            .expect("tempdir");
        let creds = dir.path().join("credentials.toml");
        std::fs::write(
            &creds,
            format!(
                "consumer_key = \"{}\"\nconsumer_secret = \"{}\"\n",
                handle.consumer_key(),
                handle.consumer_secret()
            ),
        )
        .expect("credentials");
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Arc::new(Sim { rt, handle, dir })
    }

    pub fn credentials_file(&self) -> std::path::PathBuf {
        self.dir.path().join("credentials.toml")
    }

    /// The `backend` key and `[toopher]` section for toopherd.toml (put top-level keys
    /// before it). Short timeouts keep the tests quick.
    pub fn config(&self, extra_toopher: &str) -> String {
        let defaults: String = [
            ("timeout", "3"),
            ("poll_interval", "0.1"),
            ("push_timeout", "4"),
        ]
        .iter()
        .filter(|(k, _)| !extra_toopher.contains(&format!("{k} =")))
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
        format!(
            "backend = \"toopher\"\n[toopher]\nbase_url = \"{}\"\ncredentials_file = \"{}\"\nca_file = \"{}\"\n\
             {defaults}{extra_toopher}\n",
            self.handle.base_url(),
            self.credentials_file().display(),
            self.handle
                .ca_file()
                .expect("https simulator has a CA file")
                .display(),
        )
    }

    /// toopherd against this simulator; `top` holds top-level keys (availability, failmode).
    pub fn toopherd(&self, top: &str, extra_toopher: &str) -> Toopherd {
        Toopherd::start_with(&format!("{top}\n{}", self.config(extra_toopher)))
    }

    /// A user paired with a phone whose TOTP secret is returned (base32).
    pub fn paired(&self, name: &str) -> SimUser {
        self.handle.create_paired_user(name).expect("create user")
    }

    /// Waits for the next pending push and returns its id.
    pub fn next_push(&self, timeout: Duration) -> Option<String> {
        self.rt.block_on(self.handle.wait_for_pending(timeout))
    }

    /// In the background: waits for a push, then grants it (`Some(None)`), denies it with a
    /// reason (`Some(Some(reason))`), or leaves it unanswered (`None`). Returns its id.
    pub fn answer_next_push(
        self: &Arc<Self>,
        answer: Option<Option<&'static str>>,
    ) -> std::thread::JoinHandle<Option<String>> {
        let sim = Arc::clone(self);
        std::thread::spawn(move || {
            let id = sim.next_push(Duration::from_secs(20))?;
            std::thread::sleep(Duration::from_millis(200));
            match answer {
                Some(None) => sim.handle.grant(&id).expect("grant"),
                Some(Some(reason)) => sim.handle.deny(&id, reason).expect("deny"),
                None => {}
            }
            Some(id)
        })
    }

    /// Calls to `path` (below /v1) in the simulator's request log.
    pub fn calls(&self, path_prefix: &str) -> Vec<LogEntry> {
        self.handle
            .request_log()
            .into_iter()
            .filter(|e| {
                e.path.starts_with(path_prefix) || e.path.starts_with(&format!("/v1{path_prefix}"))
            })
            .collect()
    }
}
