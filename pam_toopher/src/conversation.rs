//! The conversation with the person, as a small trait so the login logic can be driven
//! by a scripted conversation in tests and by PAM's conversation function in production.

use toopher_ipc::Secret;

/// The application's conversation failed (the client went away, or refused the style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvError;

pub trait Conversation {
    /// Asks a question without echoing the answer.
    fn prompt_hidden(&mut self, text: &str) -> Result<Secret, ConvError>;
    /// Asks a question whose answer is not secret (a registration response, a phrase).
    fn prompt_visible(&mut self, text: &str) -> Result<Secret, ConvError>;
    /// Shows an informational line.
    fn info(&mut self, text: &str);
    /// Shows an error line.
    fn error(&mut self, text: &str);
}
