//! `toopherctl unlock`: an administrator lifts a rate-limit lock and its escalation.

use super::*;

impl Conn {
    pub(super) async fn unlock(&mut self, user: String) -> Response {
        if let Some(refusal) = self.authorize("unlock", &user, true) {
            return refusal;
        }
        let limits = self.d.limits();
        let name = user.clone();
        match self.d.db(move |s| s.unlock(&name, now(), limits)).await {
            Ok(was) => {
                self.log_admin("unlock", &user, if was { "unlocked" } else { "not_locked" });
                self.status(user).await
            }
            Err(e) => internal(&self.d, "unlock", &e),
        }
    }
}
