//! Requests about a name the system may not know: one rule for all of them (see
//! [`crate::accounts`] for what each request needs). A name that is neither a system
//! account nor, where that suffices, known to toopherd is a mistake (a typo, most often),
//! and is refused before any store write or Toopher call, so no record is made that a
//! later account of that name would inherit.

use super::conn::Conn;
use crate::accounts::{self, Need, Presence};
use crate::authz;
use crate::now;
use toopher_ipc::{AdminResponse, ErrorKind};

/// The answer when `request` names a user that must exist and does not: see
/// [`accounts::refusal`]. `None`: go on. A failed lookup counts as "no account" and a
/// failed store as an error, so this fails closed.
pub(super) async fn no_such_user(
    conn: &Conn,
    request: &str,
    user: &str,
    enabling: bool,
) -> Option<AdminResponse> {
    let need = accounts::need(request, enabling);
    if need == Need::Cleanup {
        return None;
    }
    let name = user.to_owned();
    // NSS may block (LDAP, sssd): off the runtime's threads.
    let account = tokio::task::spawn_blocking(move || authz::user_exists(&name))
        .await
        .unwrap_or(false);
    let record = if need == Need::AccountOrRecord && !account {
        let (limits, backend, name) = (conn.d.limits(), conn.d.backend.name(), user.to_owned());
        match conn
            .d
            .store
            .call(move |s| s.status(&name, backend, now(), limits))
            .await
        {
            Ok(st) => st.has_record(),
            Err(e) => return Some(conn.internal(request, &e)),
        }
    } else {
        false
    };
    accounts::refusal(request, user, enabling, Presence { account, record })
        .map(|text| AdminResponse::error(ErrorKind::NotFound, text))
}
