//! The API objects' own calls (reload, enable, reset, reset links, QR code), which
//! `ToopherApi` carries out. Kept apart from `models` so that the objects stay pure data
//! and `models` does not depend on the client that parses them.

use crate::client::ToopherApi;
use crate::error::Result;
use crate::models::{AuthenticationRequest, Pairing, User, UserTerminal};

impl AuthenticationRequest {
    /// Reloads this request from the server.
    pub async fn refresh_from_server(&mut self, api: &ToopherApi) -> Result<()> {
        *self = api.get_authentication_request_by_id(&self.id).await?;
        Ok(())
    }

    /// Settles this pending request with a one-time password (`otp_auth`), and takes
    /// the server's answer.
    pub async fn authenticate_with_otp(&mut self, otp: &str, api: &ToopherApi) -> Result<()> {
        *self = api.authenticate_with_otp(&self.id, otp, &[]).await?;
        Ok(())
    }
}

impl Pairing {
    /// Reloads this pairing from the server.
    pub async fn refresh_from_server(&mut self, api: &ToopherApi) -> Result<()> {
        *self = api.get_pairing_by_id(&self.id).await?;
        Ok(())
    }

    /// The QR code of this pairing, as PNG bytes.
    pub async fn get_qr_code_image(&self, api: &ToopherApi) -> Result<Vec<u8>> {
        api.get_pairing_qr_code_image(&self.id).await
    }

    /// A link the person can use to reset this pairing.
    pub async fn get_reset_link(
        &self,
        api: &ToopherApi,
        security_question: Option<&str>,
        security_answer: Option<&str>,
    ) -> Result<String> {
        api.get_pairing_reset_link(&self.id, security_question, security_answer, &[])
            .await
    }

    /// E-mails the reset link to `email`.
    pub async fn email_reset_link(&self, api: &ToopherApi, email: &str) -> Result<()> {
        api.email_pairing_reset_link_to_user(&self.id, email, &[])
            .await
    }
}

impl UserTerminal {
    /// Reloads this terminal from the server.
    pub async fn refresh_from_server(&mut self, api: &ToopherApi) -> Result<()> {
        *self = api.get_user_terminal_by_id(&self.id).await?;
        Ok(())
    }
}

impl User {
    /// Reloads this user from the server.
    pub async fn refresh_from_server(&mut self, api: &ToopherApi) -> Result<()> {
        *self = api.get_user_by_id(&self.id).await?;
        Ok(())
    }

    /// Enables Toopher authentication for this user.
    pub async fn enable(&mut self, api: &ToopherApi) -> Result<()> {
        *self = api.set_user_enabled(&self.id, true).await?;
        Ok(())
    }

    /// Disables Toopher authentication for this user.
    pub async fn disable(&mut self, api: &ToopherApi) -> Result<()> {
        *self = api.set_user_enabled(&self.id, false).await?;
        Ok(())
    }

    /// Resets this user (removes the pairings).
    pub async fn reset(&self, api: &ToopherApi) -> Result<()> {
        api.reset_user(&self.name).await
    }
}
