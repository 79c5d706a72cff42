//! The toopherd socket protocol.
//!
//! Frames are a 4-byte big-endian length followed by a JSON envelope
//! `{"v": PROTOCOL_VERSION, "msg": ...}`. Messages are typed in two families: a login's
//! ([`LoginRequest`], answered by a [`LoginResponse`]) and an administrative one
//! ([`AdminRequest`], [`AdminResponse`]); [`Request`] and [`Response`] hold either, as
//! toopherd reads and writes them. Anything that can hold a code or a secret is a
//! [`Secret`], whose `Debug` form is redacted, so no message can leak one through a log
//! line.
//!
//! This crate is used inside the PAM module: no async runtime, no threads,
//! no panics on input, every wait bounded.

mod client;
mod frame;
pub mod lean;
mod message;
mod secret;
mod text;

pub use client::{Client, Timeouts};
pub use frame::{FrameError, MAX_FRAME_LEN, PROTOCOL_VERSION, parse_header, read_frame};
#[cfg(feature = "serde")]
pub use frame::{decode, encode, write_frame};
pub use message::*;
pub use secret::Secret;
pub use text::is_hidden;

/// Where toopherd listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/toopherd/toopherd.sock";
