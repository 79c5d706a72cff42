//! Fleet mode: every host's toopherd on one shared PostgreSQL database, so an enrolment,
//! the replay guard, the rate limit and recovery codes hold across the fleet (issue 11).
//!
//! - [`credentials`]: the 0600 credentials file with the fleet key and the database password.
//! - [`seal`]: TOTP secrets encrypted at rest with the fleet key, bound to their user.
//! - [`pg`]: the PostgreSQL store; [`blocking`]: the same for callers that block.
//! - [`settings`]: the `[store]` section of toopherd.toml.
//! - [`commands`]: what `toopherctl store ...` does (keygen, check, rotate-key, import).

pub mod blocking;
pub mod commands;
pub mod credentials;
pub mod pg;
pub mod seal;
pub mod settings;
mod storage;
