//! Waiting for toopherd's final answer to something the phone must settle (a push, a
//! pairing), in slices so that toopherd soon notices a module that went away.

use crate::daemon::LoginLink;
use crate::login::{Level, Login, Outcome};
use std::time::{Duration, Instant};
use toopher_ipc::{LoginRequest, LoginResponse};

/// Each `Wait` is this long at most, so toopherd soon notices a vanished module.
const WAIT_SLICE: Duration = Duration::from_secs(5);
/// Allowance on top of a slice for toopherd's last poll, which may have begun just
/// before the slice ended (one API request, at most 20 s, plus a 429 waited out).
const WAIT_MARGIN: Duration = crate::daemon::TIMEOUTS.io;

/// Waits in slices for toopherd's final answer to a pending push or pairing, within the
/// module's deadline (then cancels and denies).
pub(crate) fn wait_for_answer<D: LoginLink>(
    login: &mut Login<'_>,
    daemon: &mut D,
    deadline: Instant,
) -> Result<LoginResponse, Outcome> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = daemon.call(&LoginRequest::Cancel);
            login.note(Level::Notice, "outcome=denied reason=module_timeout");
            login.conv.error("Timed out waiting for approval.");
            return Err(Outcome::AuthErr);
        }
        let slice = left.min(WAIT_SLICE);
        let wait = LoginRequest::Wait {
            timeout_ms: u32::try_from(slice.as_millis()).unwrap_or(u32::MAX),
        };
        match daemon.call_within(&wait, slice + WAIT_MARGIN) {
            Ok(LoginResponse::Pending) => continue,
            Ok(answer) => return Ok(answer),
            Err(e) => return Err(login.failed_mid_login(&e)),
        }
    }
}
