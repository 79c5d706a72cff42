//! pam_toopher.so: the second factor for PAM stacks. A thin module: it reads the login
//! from PAM, asks toopherd (over `toopher_ipc`) what to do, converses with the person and
//! maps the answer to a PAM code. No secrets, no HTTP, no threads, no global state; every
//! wait is bounded and every entry point is guarded against panics.

pub mod conversation;
pub mod daemon;
pub mod flow;
mod forward_pass;
pub mod handle;
pub mod login;
pub mod notice;
pub mod options;
mod pam_glue;
mod registration;
pub mod text;
mod wait;

pub use login::Outcome;
