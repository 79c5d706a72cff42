//! toopherd: the only process that holds second-factor secrets. The module and
//! toopherctl talk to it over a unix socket (see `toopher_ipc`).
//!
//! `server` (connections, dispatch, logins) -> `backend` (local TOTP, Toopher API)
//! -> `store` (the `Storage` trait; SQLite).

pub mod accounts;
pub mod authz;
pub mod backend;
pub mod budget;
pub mod config;
pub mod fleet;
pub mod log_limit;
pub mod logging;
pub mod policy;
pub mod preflight;
pub mod qr;
pub mod recovery;
pub mod server;
pub mod socket;
pub mod store;
pub mod totp;

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
