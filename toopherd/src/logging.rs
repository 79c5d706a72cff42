//! Log lines go to syslog's authpriv facility, or to stderr where there is no syslog
//! socket (containers, tests). A line never carries a code or a secret: callers pass
//! only names, outcomes and reasons, and every client-supplied value goes through
//! [`field`] so it cannot forge a line.

use std::io::Write;
use std::sync::Mutex;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// syslog when /dev/log exists, else stderr.
    Auto,
    Syslog,
    Stderr,
}

enum Sink {
    Syslog(Mutex<Logger<LoggerBackend, Formatter3164>>),
    Stderr,
}

pub struct Log {
    sink: Sink,
}

#[derive(Clone, Copy)]
enum Level {
    Info,
    Warn,
    Err,
}

impl Log {
    pub fn open(target: LogTarget) -> Result<Log, String> {
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "toopherd".into(),
            pid: std::process::id(),
        };
        let sink = match target {
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::Syslog => Sink::Syslog(Mutex::new(
                syslog::unix(formatter).map_err(|e| format!("cannot open syslog: {e}"))?,
            )),
            LogTarget::Auto => match syslog::unix(formatter) {
                Ok(l) => Sink::Syslog(Mutex::new(l)),
                Err(_) => Sink::Stderr,
            },
        };
        Ok(Log { sink })
    }

    pub fn stderr() -> Log {
        Log { sink: Sink::Stderr }
    }

    pub fn info(&self, msg: &str) {
        self.write(Level::Info, msg)
    }
    pub fn warn(&self, msg: &str) {
        self.write(Level::Warn, msg)
    }
    pub fn err(&self, msg: &str) {
        self.write(Level::Err, msg)
    }

    fn write(&self, level: Level, msg: &str) {
        match &self.sink {
            Sink::Syslog(l) => {
                if let Ok(mut l) = l.lock() {
                    let _ = match level {
                        Level::Info => l.info(msg),
                        Level::Warn => l.warning(msg),
                        Level::Err => l.err(msg),
                    };
                }
            }
            Sink::Stderr => {
                let tag = match level {
                    Level::Info => "info",
                    Level::Warn => "warning",
                    Level::Err => "error",
                };
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "toopherd[{}]: {tag}: {msg}",
                    std::process::id()
                );
            }
        }
    }
}

/// A client-supplied value made safe for a `key=value` log line: control characters
/// and spaces replaced, length bounded, empty shown as `-`.
pub fn field(value: Option<&str>) -> String {
    match value {
        None | Some("") => "-".into(),
        Some(v) => v
            .chars()
            .take(128)
            .map(|c| {
                if c.is_control() || c == ' ' || c == '"' {
                    '_'
                } else {
                    c
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_cannot_forge_lines() {
        assert_eq!(
            field(Some("bob\nuser=root outcome=granted")),
            "bob_user=root_outcome=granted"
        );
        assert_eq!(field(None), "-");
        assert_eq!(field(Some(&"x".repeat(500))).len(), 128);
    }
}
