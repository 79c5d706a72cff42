//! Requests that act for an account at the Toopher service (pair, reset links,
//! terminals, registration approval): a name that is neither a system account nor known
//! to toopherd is a mistake (a typo, most often), and is refused before the service is
//! asked or a record is made that a later account of that name would inherit. A name
//! toopherd holds a record of goes on: the account may have been deleted since, and its
//! Toopher state still needs managing.

use super::conn::Conn;
use crate::authz;
use crate::now;
use toopher_ipc::{AdminResponse, ErrorKind};

/// The refusal for `user` when neither the system nor toopherd knows it; `None` to go on.
/// `what` names the request in the log line of a failed store.
pub(super) async fn refuse_unknown(conn: &Conn, user: &str, what: &str) -> Option<AdminResponse> {
    let name = user.to_owned();
    // NSS may block (LDAP, sssd): off the runtime's threads. A failed lookup is "unknown"
    // only if toopherd has no record either, so this fails closed.
    if tokio::task::spawn_blocking(move || authz::user_exists(&name))
        .await
        .unwrap_or(false)
    {
        return None;
    }
    let (limits, backend, name) = (conn.d.limits(), conn.d.backend.name(), user.to_owned());
    match conn
        .d
        .store
        .call(move |s| s.status(&name, backend, now(), limits))
        .await
    {
        Ok(st) if st.has_record() => None,
        Ok(_) => Some(AdminResponse::error(
            ErrorKind::NotFound,
            format!("no such user: {user}"),
        )),
        Err(e) => Some(conn.internal(what, &e)),
    }
}
