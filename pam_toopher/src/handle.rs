//! What a login leaves in the PAM handle for the rest of the stack, as a trait so the
//! login logic can be tested without libpam.

use toopher_ipc::Secret;

/// The PAM environment variable that carries a grace bind token from authentication to
/// the module's session hook (OpenSSH copies the PAM environment of its authentication
/// child back to the process that opens the session). The hook removes it again, so it
/// never reaches the person's environment when the session line is configured.
pub const GRACE_ENV: &str = "TOOPHER_GRACE";

pub trait Handle {
    /// Sets PAM_AUTHTOK for the next module (`forward_pass`); false when PAM refused.
    fn set_authtok(&mut self, password: &Secret) -> bool;
    /// Whether a grace bind token can be kept for a session hook at all (not without a
    /// PAM handle): only then is toopherd asked for one.
    fn takes_grace_token(&self) -> bool;
    /// Keeps a grace bind token for this transaction's session hook.
    fn keep_grace_token(&mut self, token: &Secret);
}

/// A handle that keeps nothing (tests, and callers without a PAM handle).
pub struct NoHandle;

impl Handle for NoHandle {
    fn set_authtok(&mut self, _: &Secret) -> bool {
        false
    }
    fn takes_grace_token(&self) -> bool {
        false
    }
    fn keep_grace_token(&mut self, _: &Secret) {}
}
