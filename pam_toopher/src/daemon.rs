//! The link to toopherd, as a trait so the login logic can be tested without a socket.

use std::path::Path;
use std::time::Duration;
use toopher_ipc::{Client, FrameError, LoginRequest, LoginResponse, Timeouts};

/// One login's link to toopherd: it carries a login's requests and reads only a login's
/// answers. An administrative answer (toopherd never sends one to a login) does not
/// decode: it is a [`FrameError`], which ends the login as an error, never by `failmode`.
pub trait LoginLink {
    fn call(&mut self, req: &LoginRequest) -> Result<LoginResponse, FrameError>;
    /// Like `call`, waiting at most `wait` for the answer (for `Wait`).
    fn call_within(
        &mut self,
        req: &LoginRequest,
        wait: Duration,
    ) -> Result<LoginResponse, FrameError>;
}

impl LoginLink for Client {
    fn call(&mut self, req: &LoginRequest) -> Result<LoginResponse, FrameError> {
        Client::call(self, req)
    }
    fn call_within(
        &mut self,
        req: &LoginRequest,
        wait: Duration,
    ) -> Result<LoginResponse, FrameError> {
        Client::call_within(self, req, wait)
    }
}

/// Bounds used by the module: it runs inside sshd and sudo and must never hang them.
/// toopherd's longest single answer is two API timeouts (a request, a 429 waited out and
/// the retry: 2 x 20 s at most), so 45 s is enough and still inside sshd's LoginGraceTime.
pub const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(3),
    io: Duration::from_secs(45),
};

pub fn connect(socket: &Path) -> std::io::Result<Client> {
    Client::connect(socket, TIMEOUTS)
}
