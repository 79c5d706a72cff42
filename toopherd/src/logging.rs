//! Log lines go to syslog's authpriv facility, or to stderr where there is no syslog
//! socket (containers, tests). A line never carries a code or a secret: callers pass
//! only names, outcomes and reasons, and every client-supplied value goes through
//! [`field`] so it cannot forge a line.
//!
//! Refusals of malformed or abusive input go through [`Log::abuse`], which bounds them
//! per uid (see [`crate::log_limit`]); decisions about logins use the plain levels and
//! are never suppressed.

use crate::log_limit::{LogLimiter, Suppressed};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTarget {
    /// syslog when /dev/log exists, else stderr.
    Auto,
    Syslog,
    Stderr,
}

/// How long a line may wait for syslog's socket. Every local user can write to /dev/log
/// and so fill the syslog daemon's queue; a login must not wait on that (all of a
/// toopherd's logins share one async thread). A line not sent in time goes to stderr:
/// under systemd, the unit's own stream to the journal, which no one else can fill.
const SYSLOG_SEND_TIMEOUT: Duration = Duration::from_millis(250);

type Syslog = Logger<LoggerBackend, Formatter3164>;

/// `logger` with its socket's sends bounded by [`SYSLOG_SEND_TIMEOUT`].
fn bounded(logger: Syslog) -> Result<Syslog, String> {
    let set = match &logger.backend {
        LoggerBackend::Unix(s) => s.set_write_timeout(Some(SYSLOG_SEND_TIMEOUT)),
        LoggerBackend::UnixStream(w) => w.get_ref().set_write_timeout(Some(SYSLOG_SEND_TIMEOUT)),
        LoggerBackend::Udp(..) | LoggerBackend::Tcp(..) => Ok(()),
    };
    set.map_err(|e| format!("cannot bound the syslog socket: {e}"))?;
    Ok(logger)
}

enum Sink {
    Syslog(Mutex<Syslog>),
    Stderr,
}

pub struct Log {
    sink: Sink,
    limits: Mutex<AbuseLimits>,
}

/// Per uid and per window: this many lines about bad input, then a count.
pub const ABUSE_WINDOW: Duration = Duration::from_secs(60);
pub const BAD_INPUT_BURST: u32 = 5;
/// A uid at its connection limit is logged once per window.
pub const AT_LIMIT_BURST: u32 = 1;
/// The key of abuse lines whose uid is unknown ((uid_t)-1 is no one's uid).
pub const UNKNOWN_UID: u32 = u32::MAX;
/// uids tracked at once; lines of further uids are counted together.
const MAX_TRACKED_UIDS: usize = 4096;

/// What kind of abuse a line reports; each kind has its own budget per uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// Malformed, oversized, stalled or unauthorised requests.
    BadInput,
    /// Connections refused because the uid (or everyone) is at the connection limit.
    AtLimit,
}

struct AbuseLimits {
    bad_input: LogLimiter<u32>,
    at_limit: LogLimiter<u32>,
}

impl AbuseLimits {
    fn new() -> Self {
        AbuseLimits {
            bad_input: LogLimiter::new(ABUSE_WINDOW, BAD_INPUT_BURST, MAX_TRACKED_UIDS),
            at_limit: LogLimiter::new(ABUSE_WINDOW, AT_LIMIT_BURST, MAX_TRACKED_UIDS),
        }
    }
}

fn summary_line(kind: Abuse, s: &Suppressed<u32>) -> String {
    let who = match s.key {
        Some(UNKNOWN_UID) => "unknown peers".into(),
        Some(uid) => format!("uid {uid}"),
        None => "other uids".into(),
    };
    let what = match (kind, s.key) {
        (Abuse::AtLimit, Some(uid)) if uid != UNKNOWN_UID => {
            "more connections refused at the connection limit"
        }
        _ => "similar messages suppressed",
    };
    format!(
        "{who}: {} {what} in the last {} s",
        s.count,
        s.span.as_secs_f64().round() as u64
    )
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
            LogTarget::Syslog => Sink::Syslog(Mutex::new(bounded(
                syslog::unix(formatter).map_err(|e| format!("cannot open syslog: {e}"))?,
            )?)),
            LogTarget::Auto => match syslog::unix(formatter).map_err(|e| e.to_string()) {
                Ok(l) => Sink::Syslog(Mutex::new(bounded(l)?)),
                Err(_) => Sink::Stderr,
            },
        };
        Ok(Log::with_sink(sink))
    }

    pub fn stderr() -> Log {
        Log::with_sink(Sink::Stderr)
    }

    /// Whether lines go to stderr (not syslog).
    pub fn is_stderr(&self) -> bool {
        matches!(self.sink, Sink::Stderr)
    }

    fn with_sink(sink: Sink) -> Log {
        Log {
            sink,
            limits: Mutex::new(AbuseLimits::new()),
        }
    }

    /// A warning about bad input from `uid`, within that uid's budget for `kind`.
    pub fn abuse(&self, uid: u32, kind: Abuse, msg: &str) {
        let verdict = {
            let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            let limiter = match kind {
                Abuse::BadInput => &mut limits.bad_input,
                Abuse::AtLimit => &mut limits.at_limit,
            };
            limiter.check(uid, Instant::now())
        };
        if let Some(s) = verdict.summary {
            self.warn(&summary_line(kind, &s));
        }
        if verdict.log {
            self.warn(msg);
        }
    }

    /// Writes the counts of suppressed lines whose window has ended (every window with
    /// `all`, at shutdown). Called periodically so a count is reported even when its
    /// uid goes quiet.
    pub fn flush_suppressed(&self, all: bool) {
        let now = Instant::now();
        let (bad, limit) = {
            let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            (
                limits.bad_input.flush(now, all),
                limits.at_limit.flush(now, all),
            )
        };
        for s in &bad {
            self.warn(&summary_line(Abuse::BadInput, s));
        }
        for s in &limit {
            self.warn(&summary_line(Abuse::AtLimit, s));
        }
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
        let msg = &visible(msg);
        let sent = match &self.sink {
            Sink::Syslog(l) => l.lock().is_ok_and(|mut l| {
                match level {
                    Level::Info => l.info(msg),
                    Level::Warn => l.warning(msg),
                    Level::Err => l.err(msg),
                }
                .is_ok()
            }),
            Sink::Stderr => false,
        };
        if !sent {
            to_stderr(level, msg);
        }
    }
}

/// One write per line: no other line can come between its parts, and it is one system
/// call on the login's path, not five.
fn to_stderr(level: Level, msg: &str) {
    let tag = match level {
        Level::Info => "info",
        Level::Warn => "warning",
        Level::Err => "error",
    };
    let line = format!("toopherd[{}]: {tag}: {msg}\n", std::process::id());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A whole line with its control and hidden characters escaped: the last defence for
/// text that did not go through [`field`] (an error's own words, say).
fn visible(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.chars().any(toopher_ipc::is_hidden) {
        return msg.into();
    }
    msg.chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            c if toopher_ipc::is_hidden(c) => format!("\\u{:04x}", u32::from(c)),
            c => c.to_string(),
        })
        .collect::<String>()
        .into()
}

/// A client-supplied value made safe for a `key=value` log line, in logfmt: bare when it
/// is one plain word, else in double quotes with `"` and `\` escaped. Control and hidden
/// characters ([`toopher_ipc::is_hidden`]) and every space but U+0020 (a U+2003 is a space
/// to fail2ban's `\s`) are written as escapes (`\n`, `\u2028`), so a value can neither end the
/// line, nor pass for another field, nor hide what it says. At most 128 characters of the
/// value are kept; none (or empty) is shown as `-`.
pub fn field(value: Option<&str>) -> String {
    const MAX_CHARS: usize = 128;
    let v = match value {
        None | Some("") => return "-".into(),
        Some(v) => v,
    };
    let mut body = String::with_capacity(v.len().min(4 * MAX_CHARS) + 2);
    let mut quote = false;
    for c in v.chars().take(MAX_CHARS) {
        match c {
            '"' | '\\' => {
                quote = true;
                body.push('\\');
                body.push(c);
            }
            ' ' | '=' => {
                quote = true;
                body.push(c);
            }
            '\n' => {
                quote = true;
                body.push_str("\\n");
            }
            '\r' => {
                quote = true;
                body.push_str("\\r");
            }
            '\t' => {
                quote = true;
                body.push_str("\\t");
            }
            // Every hidden character and space is in the BMP: `\uXXXX` as in Go and JSON.
            c if toopher_ipc::is_hidden(c) || c.is_whitespace() => {
                quote = true;
                body.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => body.push(c),
        }
    }
    // A bare `-` would read as "no value".
    if quote || body == "-" {
        format!("\"{body}\"")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_syslog_socket_holds_a_line_for_the_timeout_not_forever() {
        use std::os::unix::net::UnixDatagram;
        // The daemon's end never reads: fill its queue, as a flood of other users would.
        let (ours, _daemon) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        while ours.send(&[0u8; 512]).is_ok() {}
        ours.set_nonblocking(false).unwrap();
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "toopherd".into(),
            pid: std::process::id(),
        };
        let logger = bounded(Logger {
            formatter,
            backend: LoggerBackend::Unix(ours),
        })
        .unwrap();
        let log = Log::with_sink(Sink::Syslog(Mutex::new(logger)));
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let start = Instant::now();
            log.info("user=alice result=granted");
            let _ = done.send(start.elapsed());
        });
        // Without the bound the send blocks until the daemon reads, which it never does.
        let took = wait
            .recv_timeout(Duration::from_secs(10))
            .expect("a log line waited on a full syslog socket without end");
        assert!(
            took >= SYSLOG_SEND_TIMEOUT,
            "{took:?}: the queue was not full"
        );
    }

    use super::*;

    #[test]
    fn summaries_name_the_uid_the_count_and_the_span() {
        let s = |key| Suppressed {
            key,
            count: 1234,
            span: Duration::from_millis(59_600),
        };
        assert_eq!(
            summary_line(Abuse::BadInput, &s(Some(65534))),
            "uid 65534: 1234 similar messages suppressed in the last 60 s"
        );
        assert_eq!(
            summary_line(Abuse::AtLimit, &s(Some(1000))),
            "uid 1000: 1234 more connections refused at the connection limit in the last 60 s"
        );
        assert_eq!(
            summary_line(Abuse::AtLimit, &s(Some(UNKNOWN_UID))),
            "unknown peers: 1234 similar messages suppressed in the last 60 s"
        );
        assert_eq!(
            summary_line(Abuse::BadInput, &s(None)),
            "other uids: 1234 similar messages suppressed in the last 60 s"
        );
    }

    #[test]
    fn fields_cannot_forge_lines() {
        assert_eq!(
            field(Some("bob\nuser=root outcome=granted")),
            r#""bob\nuser=root outcome=granted""#
        );
        assert_eq!(
            field(Some("10.9.9.9\u{2003}outcome=granted\u{2028}auth\u{202E}")),
            r#""10.9.9.9\u2003outcome=granted\u2028auth\u202e""#
        );
        assert_eq!(
            field(Some("say \"hi\" \\ bye\r\t\x1b[2J")),
            r#""say \"hi\" \\ bye\r\t\u001b[2J""#
        );
        assert_eq!(field(None), "-");
        assert_eq!(field(Some("")), "-");
        assert_eq!(field(Some("-")), r#""-""#);
        assert_eq!(field(Some(&"x".repeat(500))).len(), 128);
    }

    #[test]
    fn lines_keep_no_hidden_character() {
        assert_eq!(visible("plain line"), "plain line");
        assert_eq!(
            visible("error: x\ny=1\u{202e}\x1b[1m"),
            r"error: x\ny=1\u202e\u001b[1m"
        );
    }

    #[test]
    fn fields_are_logfmt() {
        // Plain words stay bare, as before.
        assert_eq!(field(Some("alice")), "alice");
        assert_eq!(field(Some("192.0.2.10")), "192.0.2.10");
        assert_eq!(field(Some("enrolled_in_login")), "enrolled_in_login");
        assert_eq!(field(Some("Zoë")), "Zoë");
        // Sentences are quoted with their spaces, not turned into underscores.
        assert_eq!(
            field(Some(
                "could not connect to the Toopher API: error sending request"
            )),
            r#""could not connect to the Toopher API: error sending request""#
        );
        assert_eq!(field(Some("a=b")), r#""a=b""#);
    }

    #[test]
    fn a_field_is_one_token_whatever_it_holds() {
        // Whatever goes in, the result has no hidden character, and a logfmt reader
        // (a quote opens, a backslash escapes the next, an unescaped quote closes) reads
        // exactly one token that ends where the field ends.
        let nasty = [
            "\"",
            "\\",
            "\\\"",
            "a\" b=\"c",
            "x\\",
            "\u{85}",
            "\u{feff}",
            " ",
            "\u{3000}",
            "=",
        ];
        for a in nasty {
            for b in nasty {
                let f = field(Some(&format!("{a}{b}")));
                assert!(!f.chars().any(toopher_ipc::is_hidden), "{f:?}");
                assert!(!f.chars().any(|c| c.is_whitespace() && c != ' '), "{f:?}");
                let mut chars = f.chars();
                if f.starts_with('"') {
                    chars.next();
                    let mut closed_at = None;
                    let mut i = 1;
                    while let Some(c) = chars.next() {
                        i += c.len_utf8();
                        match c {
                            '\\' => i += chars.next().map_or(0, char::len_utf8),
                            '"' => {
                                closed_at = Some(i);
                                break;
                            }
                            _ => {}
                        }
                    }
                    assert_eq!(closed_at, Some(f.len()), "{f:?}");
                } else {
                    assert!(!f.contains([' ', '"', '=', '\\']), "{f:?}");
                }
            }
        }
    }
}
