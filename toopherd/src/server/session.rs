//! A connection's login, as a state machine: no login yet, one open, or one ended. An
//! ended login stays ended: the connection cannot begin another (a client that wants a
//! new login opens a new connection).

use std::time::{Duration, Instant};
use toopher_ipc::LoginContext;

/// Second-factor attempts on one connection, on top of the per-user rate limit.
pub const MAX_ATTEMPTS_PER_LOGIN: u32 = 10;
/// Longest single `Wait`: the module waits in slices so a vanished client ends the poll.
pub const MAX_WAIT_SLICE: Duration = Duration::from_secs(10);

pub enum Session {
    /// No login begun (or a `Begin` that was answered at once, with nothing to continue).
    Idle,
    Open(Box<Login>),
    /// Granted, refused for good, or out of attempts.
    Closed,
}

pub struct Login {
    pub ctx: LoginContext,
    attempts: u32,
    /// The push waiting for the person.
    pub push: Option<PendingPush>,
    pub phase: Phase,
    /// Failures recorded in this login: the person saw them, so no notice repeats them.
    pub own_failures: Vec<i64>,
    /// What the policy said before the backend was asked (the rule, and whether a login
    /// without a factor passes).
    pub policy: Option<crate::policy::Stage>,
}

/// Where an open login stands. Most logins stay in `Challenge`; an account without a
/// factor under `enroll = "two-way"` goes through registration and enrolment first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Challenge,
    /// A registration code was shown; waiting for the response code.
    Registering,
    /// Registered (TOTP): the first code activates the new enrolment.
    EnrollingTotp,
    /// Registered (phones): waiting for the app's pairing phrase.
    AwaitingPhrase,
    /// The pairing was created; waiting for the phone to confirm it.
    Pairing {
        id: String,
        deadline: Instant,
    },
}

#[derive(Debug, Clone)]
pub struct PendingPush {
    pub id: String,
    /// When it went out: the poll schedule counts from here.
    pub sent: Instant,
    pub deadline: Instant,
    /// The next poll due (kept across `Wait`s, so a new `Wait` adds no poll).
    pub next_poll: Instant,
}

/// The login has used all its attempts (and is ended).
#[derive(Debug)]
pub struct OutOfAttempts;

impl Login {
    pub fn new(ctx: LoginContext, phase: Phase) -> Login {
        Login {
            ctx,
            attempts: 0,
            push: None,
            phase,
            own_failures: Vec::new(),
            policy: None,
        }
    }
}

impl Session {
    pub fn is_idle(&self) -> bool {
        matches!(self, Session::Idle)
    }

    /// Opens a login (the caller checked that none was begun).
    pub fn open(&mut self, login: Login) {
        *self = Session::Open(Box::new(login));
    }

    /// The open login.
    pub fn login(&self) -> Option<&Login> {
        match self {
            Session::Open(l) => Some(l),
            Session::Idle | Session::Closed => None,
        }
    }

    pub fn login_mut(&mut self) -> Option<&mut Login> {
        match self {
            Session::Open(l) => Some(l),
            Session::Idle | Session::Closed => None,
        }
    }

    /// Whether the open login is in `phase`.
    pub fn in_phase(&self, phase: &Phase) -> bool {
        self.login().is_some_and(|l| &l.phase == phase)
    }

    /// Counts an attempt of the open login; past [`MAX_ATTEMPTS_PER_LOGIN`] the login ends.
    pub fn count_attempt(&mut self) -> Result<(), OutOfAttempts> {
        let Session::Open(l) = self else {
            return Ok(());
        };
        l.attempts += 1;
        if l.attempts > MAX_ATTEMPTS_PER_LOGIN {
            self.end();
            return Err(OutOfAttempts);
        }
        Ok(())
    }

    /// Ends the open login, and any push it left pending. The one way a login ends.
    pub fn end(&mut self) {
        if let Session::Open(_) = self {
            *self = Session::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> LoginContext {
        LoginContext {
            user: "alice".into(),
            service: "sshd".into(),
            rhost: None,
            tty: None,
            ruser: None,
            autopush: false,
            notify: false,
        }
    }

    #[test]
    fn attempts_end_the_login_at_the_limit() {
        let mut s = Session::Idle;
        s.open(Login::new(ctx(), Phase::Challenge));
        for _ in 0..MAX_ATTEMPTS_PER_LOGIN {
            assert!(s.count_attempt().is_ok());
            assert!(s.login().is_some());
        }
        assert!(s.count_attempt().is_err());
        assert!(matches!(s, Session::Closed));
    }

    #[test]
    fn an_ended_login_stays_ended() {
        let mut s = Session::Idle;
        s.end();
        assert!(s.is_idle());
        s.open(Login::new(ctx(), Phase::Registering));
        assert!(s.in_phase(&Phase::Registering));
        s.end();
        assert!(!s.is_idle() && s.login().is_none());
        s.end();
        assert!(matches!(s, Session::Closed));
    }
}
