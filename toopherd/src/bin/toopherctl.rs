//! toopherctl: enrol and manage second factors through toopherd. It never reads the
//! database or any credential itself; toopherd authorises each request by the caller's uid.
//! The one exception is `toopherctl store`, the fleet's shared store's upkeep, which
//! works on the shared database with toopherd.toml and the credentials file (so as root).

use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use toopher_ipc::{
    AccountStatus, AdminRequest, AdminResponse, Client, DenyReason, Enrollment, EnrollmentState,
    ErrorReply, PairBy, PairingInfo, Secret, Timeouts,
};
use toopherd::qr;

const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;

#[derive(Parser)]
#[command(
    name = "toopherctl",
    version,
    about = "Enrol and manage pam_toopher second factors"
)]
struct Args {
    /// toopherd's socket.
    #[arg(long, env = "TOOPHERD_SOCKET", default_value = toopher_ipc::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a TOTP enrolment: shows the QR code, secret and recovery codes, then asks
    /// for the first code, which activates it (Ctrl-C leaves it pending until it expires).
    #[command(visible_alias = "enrol")]
    Enroll {
        /// The account (default: yourself). Enrolling someone else needs root or the admin group.
        user: Option<String>,
        /// Print the enrolment as JSON and do not prompt (activate with `toopherctl activate`).
        #[arg(long)]
        json: bool,
        /// Replace an active enrolment (root or the admin group).
        #[arg(long)]
        force: bool,
        /// Also write the QR code as a PNG here (a new file, mode 0600: it holds the
        /// secret; delete it once scanned).
        #[arg(long, conflicts_with = "json")]
        qr_file: Option<PathBuf>,
    },
    /// Activate a pending enrolment with the first code from the app.
    Activate { user: String, code: String },
    /// Show an account's second-factor state.
    Status {
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove an account's local enrolment (admin).
    Remove { user: String },
    /// Pair a phone with Toopher (toopher backend): by the phrase the app shows, by text
    /// message, or by a QR code drawn here; then wait until the phone confirms.
    Pair {
        /// The account (default: yourself). Pairing someone else needs admin rights.
        user: Option<String>,
        #[arg(long, conflicts_with_all = ["sms", "qr"])]
        phrase: Option<String>,
        /// Phone number for a text message.
        #[arg(long, conflicts_with = "qr")]
        sms: Option<String>,
        /// Country code for --sms (e.g. 1, 44).
        #[arg(long, requires = "sms")]
        country: Option<String>,
        #[arg(long)]
        qr: bool,
        /// Also write the QR code PNG here.
        #[arg(long, requires = "qr")]
        qr_file: Option<PathBuf>,
        /// Seconds to wait for the phone.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Every account toopherd knows (admin).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Suspend an account's second factor: its logins are denied until `enable` (admin).
    Disable { user: String },
    /// Resume an account's second factor (admin).
    Enable { user: String },
    /// Lift an account's rate-limit lock and reset its escalation (admin).
    Unlock { user: String },
    /// Forget an account: Toopher `users/reset` and local removal (admin).
    Reset { user: String },
    /// Show a link to reset USER's pairing, or e-mail it (admin, toopher backend).
    ResetLink {
        user: String,
        #[arg(long)]
        email: Option<String>,
    },
    /// Named Toopher terminals (admin, toopher backend).
    #[command(subcommand)]
    Terminals(TerminalCommand),
    /// Recovery codes (local backend).
    RecoveryCodes {
        user: Option<String>,
        /// Replace them; the old ones stop working at once (admin).
        #[arg(long, required = true)]
        regenerate: bool,
    },
    /// Two-way registration of an account that has no second factor yet.
    #[command(subcommand)]
    Registration(RegistrationCommand),
    /// The login policy (admin).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Grace periods (admin).
    #[command(subcommand)]
    Grace(GraceCommand),
    /// The fleet's shared store (`[store] kind = "postgres"`): worked on directly with
    /// toopherd.toml and the credentials file, not through toopherd (root).
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print which rule would decide a login of USER now, and why, without performing one.
    Explain {
        user: String,
        /// The remote host of the login (sshd's client address).
        #[arg(long)]
        rhost: Option<String>,
        /// The PAM service.
        #[arg(long, default_value = "sshd")]
        service: String,
        /// An audit session id (`/proc/PID/sessionid`), for the grace period of logins
        /// without a remote host (sudo, su).
        #[arg(long)]
        session: Option<u32>,
    },
}

#[derive(Subcommand)]
enum GraceCommand {
    /// End every grace period of USER at once.
    Clear { user: String },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Print a new credentials file with a fresh fleet key; every host gets the same file
    /// (0600, owned by toopherd's user or root).
    Keygen {
        /// The new key's id (a rotation takes the next one).
        #[arg(long, default_value_t = 1)]
        key_id: u32,
    },
    /// Connect to the shared database and say what is wrong, if anything.
    Check {
        #[arg(long, default_value = toopherd::config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Seal every secret again with the credentials file's current key (afterwards the
    /// older keys can be removed from the credentials files).
    RotateKey {
        #[arg(long, default_value = toopherd::config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Copy a host's SQLite enrolments into the shared store (run it on that host).
    Import {
        /// The host's toopherd database (state_dir/toopherd.sqlite3).
        #[arg(long = "from-sqlite")]
        from_sqlite: PathBuf,
        /// Replace a user the fleet already has with another enrolment.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = toopherd::config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TerminalCommand {
    /// Create a terminal with a name the person recognises and your own stable id.
    Create {
        user: String,
        name: String,
        requester_id: String,
    },
    /// Show a terminal by its Toopher id.
    Show { user: String, id: String },
}

#[derive(Subcommand)]
enum RegistrationCommand {
    /// Approve the registration code shown at USER's login prompt; prints the response
    /// code to type there. Admin, or USER in a session already logged in.
    Approve { user: String, code: String },
}

enum Failure {
    Unreachable(String),
    Refused(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(msg)) => {
            eprintln!("toopherctl: {msg}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(Failure::Unreachable(msg)) => {
            eprintln!("toopherctl: {msg}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// `toopherctl store ...`.
fn store_command(c: &StoreCommand) -> Result<(), Failure> {
    use toopherd::fleet::commands;
    let store = |config: &PathBuf| {
        toopherd::config::Config::load(config)
            .map(|c| c.store)
            .map_err(|e| Failure::Refused(format!("invalid configuration: {e}")))
    };
    let failed = |e: commands::CommandError| Failure::Refused(e.to_string());
    match c {
        StoreCommand::Keygen { key_id } => {
            let text = commands::keygen(*key_id).map_err(failed)?;
            print!("{}", text.as_str());
            Ok(())
        }
        StoreCommand::Check { config } => {
            println!("{}", commands::check(&store(config)?).map_err(failed)?);
            Ok(())
        }
        StoreCommand::RotateKey { config } => {
            let report = commands::rotate_key(&store(config)?).map_err(failed)?;
            print!("{}", commands::describe_rotation(&report));
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::Refused(format!(
                    "{} secret(s) could not be sealed again",
                    report.failed.len()
                )))
            }
        }
        StoreCommand::Import {
            from_sqlite,
            force,
            config,
        } => {
            let report = commands::import(&store(config)?, from_sqlite, *force).map_err(failed)?;
            print!("{}", commands::describe_import(&report));
            Ok(())
        }
    }
}

/// Whether the system knows the account (NSS, as toopherd and PAM see it).
fn user_exists(name: &str) -> bool {
    matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
}

fn no_such_user(name: &str) -> Failure {
    Failure::Refused(format!("no such user: {name}"))
}

/// A request that creates or uses a local enrolment (enroll, activate, recovery codes)
/// for an account the system does not know is a mistake (a typo, most often), never
/// "not enrolled". Other requests reach toopherd, which may hold a record of the name
/// (an account deleted since, or a Toopher user); a name that neither knows is then
/// refused by [`report_status`], [`known_somewhere`] and the removal commands.
fn must_exist(name: &str) -> Result<(), Failure> {
    if user_exists(name) {
        Ok(())
    } else {
        Err(no_such_user(name))
    }
}

fn current_user() -> Result<String, Failure> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| Failure::Refused("cannot tell who you are; name the user".into()))
}

/// toopherctl's link to toopherd: administrative requests, and their answers.
struct AdminLink {
    client: Client,
    socket: PathBuf,
}

impl AdminLink {
    fn connect(socket: PathBuf) -> Result<AdminLink, Failure> {
        let client = Client::connect(&socket, Timeouts::default())
            .map_err(|e| Failure::Unreachable(unreachable_text(&socket, &e)))?;
        Ok(AdminLink { client, socket })
    }

    /// A request's answer; toopherd's error answers become refusals with its message.
    fn call(&mut self, req: &AdminRequest) -> Result<AdminResponse, Failure> {
        match self.client.call(req) {
            Ok(AdminResponse::Error(ErrorReply { message, .. })) => Err(Failure::Refused(message)),
            Ok(r) => Ok(r),
            Err(e) => Err(Failure::Unreachable(format!(
                "toopherd at {} did not answer: {e}",
                self.socket.display()
            ))),
        }
    }
}

/// Why toopherd could not be reached, and what to do about it.
fn unreachable_text(socket: &std::path::Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            "toopherd is not running. Check it with `systemctl status toopherd` (its log: \
             `journalctl -u toopherd`); start it with `systemctl start toopherd`. If it runs \
             with another socket, name it with --socket or TOOPHERD_SOCKET."
        }
        ErrorKind::PermissionDenied => {
            "this account may not open the socket or its directory; toopherd makes both \
             reachable by every user, so check the directory's permissions \
             (`systemctl status toopherd`)."
        }
        _ => "check toopherd with `systemctl status toopherd` and `journalctl -u toopherd`.",
    };
    format!("cannot reach toopherd at {}: {e}\n{hint}", socket.display())
}

fn unexpected(r: &AdminResponse) -> Failure {
    Failure::Refused(format!("unexpected answer from toopherd: {r:?}"))
}

fn denial_text(reason: DenyReason) -> String {
    match reason {
        DenyReason::WrongCode => "that code is not right".into(),
        DenyReason::RateLimited => {
            "too many failed attempts; wait until the lock ends, or ask an administrator (toopherctl unlock)".into()
        }
        other => format!("refused ({})", other.as_str()),
    }
}

fn run(args: Args) -> Result<(), Failure> {
    if let Command::Store(c) = &args.command {
        return store_command(c);
    }
    let mut d = AdminLink::connect(args.socket)?;
    match args.command {
        Command::Store(c) => store_command(&c),
        Command::Enroll {
            user,
            json,
            force,
            qr_file,
        } => {
            let user = user.map_or_else(current_user, Ok)?;
            must_exist(&user)?;
            let e = match d.call(&AdminRequest::Enroll {
                user: user.clone(),
                force,
            })? {
                AdminResponse::Enrollment(e) => e,
                other => return Err(unexpected(&other)),
            };
            if json {
                print_enrollment_json(&e)
            } else {
                show_enrollment(&e, qr_file.as_deref())?;
                activate_interactively(&mut d, &user)
            }
        }
        Command::Activate { user, code } => {
            must_exist(&user)?;
            let code = Secret::new(code.trim());
            match d.call(&AdminRequest::Activate {
                user: user.clone(),
                code,
            })? {
                AdminResponse::Activated { .. } => {
                    println!("{user}: two-factor authentication is active.");
                    Ok(())
                }
                AdminResponse::Denied { reason, .. } => Err(Failure::Refused(denial_text(reason))),
                other => Err(unexpected(&other)),
            }
        }
        Command::Status { user, json } => {
            let user = user.map_or_else(current_user, Ok)?;
            match d.call(&AdminRequest::Status { user })? {
                AdminResponse::Status(st) => report_status(&st, json),
                other => Err(unexpected(&other)),
            }
        }
        Command::Pair {
            user,
            phrase,
            sms,
            country,
            qr,
            qr_file,
            timeout,
        } => {
            let user = user.map_or_else(current_user, Ok)?;
            let by = match (phrase, sms, qr) {
                (Some(phrase), None, false) => PairBy::Phrase { phrase },
                (None, Some(phone), false) => PairBy::Sms { phone, country },
                (None, None, true) => PairBy::Qr,
                _ => {
                    return Err(Failure::Refused(
                        "say how to pair: --phrase PHRASE, --sms NUMBER or --qr".into(),
                    ));
                }
            };
            known_somewhere(&mut d, &user)?;
            pair(&mut d, &user, by, qr_file, timeout)
        }
        Command::List { json } => match d.call(&AdminRequest::List)? {
            AdminResponse::Accounts { accounts } if json => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&accounts).unwrap_or_default()
                );
                Ok(())
            }
            AdminResponse::Accounts { accounts } => {
                println!(
                    "USER                     BACKEND  STATE    ENABLED   LAST SUCCESS             RECOVERY"
                );
                for a in accounts {
                    println!(
                        "{:<24} {:<8} {:<8} {:<9} {:<24} {}",
                        a.user,
                        a.backend,
                        state_word(a.state),
                        if a.enabled { "yes" } else { "SUSPENDED" },
                        a.last_success_at.map_or_else(|| "never".into(), fmt_time),
                        a.recovery_codes_left
                    );
                }
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
        Command::Disable { user } => {
            known_somewhere(&mut d, &user)?;
            set_enabled(&mut d, user, false)
        }
        Command::Enable { user } => {
            known_somewhere(&mut d, &user)?;
            set_enabled(&mut d, user, true)
        }
        Command::Unlock { user } => {
            match known_somewhere(&mut d, &user)
                .and_then(|()| d.call(&AdminRequest::Unlock { user }))?
            {
                AdminResponse::Status(st) => report_status(&st, false),
                other => Err(unexpected(&other)),
            }
        }
        Command::Reset { user } => match d.call(&AdminRequest::Reset { user })? {
            AdminResponse::Removed {
                user,
                existed: false,
            } if !user_exists(&user) => Err(no_such_user(&user)),
            AdminResponse::Removed { user, existed } => {
                println!(
                    "{user}: reset{}.",
                    if existed {
                        ""
                    } else {
                        " (toopherd had no record)"
                    }
                );
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
        Command::ResetLink { user, email } => {
            known_somewhere(&mut d, &user)?;
            match d.call(&AdminRequest::ResetLink { user, email })? {
                AdminResponse::ResetLink { url: Some(url), .. } => {
                    println!("{url}");
                    Ok(())
                }
                AdminResponse::ResetLink {
                    user,
                    emailed_to: Some(to),
                    ..
                } => {
                    println!("{user}: reset link e-mailed to {to}.");
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::Policy(PolicyCommand::Explain {
            user,
            rhost,
            service,
            session,
        }) => match d.call(&AdminRequest::PolicyExplain {
            user,
            service,
            rhost,
            session,
        })? {
            AdminResponse::Explanation {
                decision, steps, ..
            } => {
                for line in &decision {
                    println!("decision: {line}");
                }
                for step in &steps {
                    println!("  - {step}");
                }
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
        Command::Grace(GraceCommand::Clear { user }) => {
            match d.call(&AdminRequest::GraceClear { user })? {
                AdminResponse::GraceCleared { user, cleared } => {
                    println!("{user}: {cleared} grace period(s) ended.");
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::Terminals(cmd) => {
            let req = match cmd {
                TerminalCommand::Create {
                    user,
                    name,
                    requester_id,
                } => {
                    known_somewhere(&mut d, &user)?;
                    AdminRequest::TerminalCreate {
                        user,
                        name,
                        requester_id,
                    }
                }
                TerminalCommand::Show { user, id } => AdminRequest::TerminalShow { user, id },
            };
            match d.call(&req)? {
                AdminResponse::Terminal(t) => {
                    println!(
                        "id:           {}\nname:         {}\nrequester id: {}\nuser:         {}",
                        t.id, t.name, t.requester_specified_id, t.user
                    );
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::RecoveryCodes { user, .. } => {
            let user = user.map_or_else(current_user, Ok)?;
            must_exist(&user)?;
            match d.call(&AdminRequest::RegenerateRecoveryCodes { user })? {
                AdminResponse::RecoveryCodes { user, codes } => {
                    println!(
                        "New recovery codes for {user} (the old ones no longer work; each works once):"
                    );
                    for c in &codes {
                        println!("    {}", c.expose());
                    }
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::Registration(RegistrationCommand::Approve { user, code }) => {
            known_somewhere(&mut d, &user)?;
            let code = Secret::new(code.trim());
            match d.call(&AdminRequest::RegistrationApprove { user, code })? {
                AdminResponse::RegistrationApproved {
                    user,
                    response_code,
                } => {
                    println!("Response code for {user}: {}", response_code.expose());
                    println!("Type it at the login prompt that showed the registration code.");
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Command::Remove { user } => match d.call(&AdminRequest::Remove { user })? {
            AdminResponse::Removed {
                user,
                existed: true,
            } => {
                println!("{user}: enrolment removed.");
                Ok(())
            }
            AdminResponse::Removed {
                user,
                existed: false,
            } if !user_exists(&user) => Err(no_such_user(&user)),
            AdminResponse::Removed {
                user,
                existed: false,
            } => {
                println!("{user}: was not enrolled.");
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
    }
}

fn print_enrollment_json(e: &Enrollment) -> Result<(), Failure> {
    let png =
        qr::png_base64(e.otpauth_uri.expose()).map_err(|e| Failure::Refused(e.to_string()))?;
    let out = serde_json::json!({
        "user": e.user,
        "secret": e.secret.expose(),
        "otpauth_uri": e.otpauth_uri.expose(),
        "qr_png_base64": png,
        "recovery_codes": e.recovery_codes.iter().map(Secret::expose).collect::<Vec<_>>(),
        "expires_at": e.expires_at,
    });
    println!("{out}");
    Ok(())
}

fn show_enrollment(e: &Enrollment, qr_file: Option<&std::path::Path>) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let uri = e.otpauth_uri.expose();
    if let Some(path) = qr_file {
        write_private_png(path, uri)?;
    }
    // Colour only where it is drawn on a terminal; a pipe or a file gets plain text.
    let tty = std::io::stdout().is_terminal();
    let colour = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let style = if colour {
        qr::Style::Colour
    } else {
        qr::Style::Plain
    };
    let room = if tty {
        terminal_room().unwrap_or(qr::Room::CLASSIC)
    } else {
        qr::Room::CLASSIC
    };
    let drawing = qr::fitted(uri, style, room).map_err(|e| Failure::Refused(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "A pending enrolment for {}; it expires at {} unless activated.\n",
        e.user,
        fmt_time(e.expires_at)
    );
    let _ = writeln!(
        out,
        "Recovery codes (each works once; keep them somewhere safe, away from the phone):"
    );
    for c in &e.recovery_codes {
        let _ = writeln!(out, "    {}", c.expose());
    }
    let _ = writeln!(
        out,
        "\nKey, to type into the app by hand: {}",
        e.secret.expose()
    );
    let _ = writeln!(out, "URI: {uri}");
    if let Some(path) = qr_file {
        let _ = writeln!(
            out,
            "QR code PNG: {} (it holds the secret: delete it once scanned)",
            path.display()
        );
    }
    let png_hint = match qr_file {
        Some(path) => format!("open the PNG {}", path.display()),
        None => format!(
            "run `toopherctl enroll {} --qr-file FILE` for a PNG (it replaces this pending enrolment)",
            e.user
        ),
    };
    let screen = if tty {
        format!("this terminal's {}x{}", room.columns, room.lines + 1)
    } else {
        "an 80x24 terminal".to_string()
    };
    if drawing.columns > room.columns {
        // Wrapped lines would not scan: say what it needs instead.
        let _ = writeln!(
            out,
            "\nThe QR code needs {} columns and {} lines, more than {screen}: \
             widen the window and run again, {png_hint}, or type the key.",
            drawing.columns, drawing.lines
        );
        return Ok(());
    }
    let _ = writeln!(
        out,
        "\nScan this QR code with your authenticator app (or type the key):"
    );
    let _ = write!(out, "{}", drawing.text);
    if !drawing.fits {
        let _ = writeln!(
            out,
            "(The QR code is {} lines high, more than {screen} shows: enlarge the window, \
             {png_hint}, or type the key.)",
            drawing.lines
        );
    }
    Ok(())
}

/// The terminal's size less one line for the prompt under the code.
fn terminal_room() -> Option<qr::Room> {
    use std::os::fd::AsRawFd;
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize we own; stdout's descriptor is open.
    let rc = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 1 && ws.ws_col > 0).then(|| qr::Room {
        columns: usize::from(ws.ws_col),
        lines: usize::from(ws.ws_row) - 1,
    })
}

/// The QR code as a new PNG file only its owner can read.
fn write_private_png(path: &std::path::Path, uri: &str) -> Result<(), Failure> {
    use base64::Engine;
    use std::os::unix::fs::OpenOptionsExt;
    let b64 = qr::png_base64(uri).map_err(|e| Failure::Refused(e.to_string()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Failure::Refused(e.to_string()))?;
    let fail = |e: std::io::Error| Failure::Refused(format!("{}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    f.write_all(&bytes).map_err(fail)
}

fn activate_interactively(d: &mut AdminLink, user: &str) -> Result<(), Failure> {
    let stdin = std::io::stdin();
    for _ in 0..3 {
        print!("Enter the 6-digit code from your app to activate (Ctrl-C to leave it pending): ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            println!();
            return Err(Failure::Refused(format!(
                "not activated; the enrolment stays pending (activate with `toopherctl activate {user} CODE`)"
            )));
        }
        let code = Secret::new(line.trim());
        line.clear();
        match d.call(&AdminRequest::Activate {
            user: user.into(),
            code,
        })? {
            AdminResponse::Activated { .. } => {
                println!("{user}: two-factor authentication is active.");
                return Ok(());
            }
            AdminResponse::Denied {
                reason: DenyReason::WrongCode,
                ..
            } => eprintln!("That code is not right; check the app and try again."),
            AdminResponse::Denied { reason, .. } => {
                return Err(Failure::Refused(denial_text(reason)));
            }
            other => return Err(unexpected(&other)),
        }
    }
    Err(Failure::Refused(format!(
        "not activated after three tries; the enrolment stays pending until it expires \
         (activate it with `toopherctl activate {user} CODE`)"
    )))
}

fn state_word(s: EnrollmentState) -> &'static str {
    match s {
        EnrollmentState::None => "none",
        EnrollmentState::Pending => "pending",
        EnrollmentState::Active => "active",
    }
}

fn set_enabled(d: &mut AdminLink, user: String, enabled: bool) -> Result<(), Failure> {
    match d.call(&AdminRequest::SetEnabled { user, enabled })? {
        AdminResponse::Status(st) => report_status(&st, false),
        other => Err(unexpected(&other)),
    }
}

/// Starts a pairing and waits, with a countdown, until the phone confirms it.
fn pair(
    d: &mut AdminLink,
    user: &str,
    by: PairBy,
    qr_file: Option<PathBuf>,
    timeout: u64,
) -> Result<(), Failure> {
    let info: PairingInfo = match d.call(&AdminRequest::Pair {
        user: user.into(),
        by,
    })? {
        AdminResponse::Pairing(p) => p,
        other => return Err(unexpected(&other)),
    };
    if let Some(png) = &info.qr_png_base64 {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png)
            .map_err(|_| Failure::Refused("the QR code from toopherd is not base64".into()))?;
        if let Some(path) = &qr_file {
            std::fs::write(path, &bytes)
                .map_err(|e| Failure::Refused(format!("{}: {e}", path.display())))?;
            println!("QR code written to {}", path.display());
        }
        match qr::draw_png(&bytes) {
            Ok(drawing) => println!("Scan this QR code with the Toopher app:\n\n{drawing}"),
            Err(e) => println!("(cannot draw the QR code here: {e}; use --qr-file)"),
        }
    }
    let mut state = info;
    println!("Pairing {} started for {user}.", state.pairing_id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    while !state.enabled || state.pending {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            println!();
            return Err(Failure::Refused(format!(
                "the phone did not confirm pairing {} in time; run pair again",
                state.pairing_id
            )));
        }
        print!(
            "\rWaiting for the phone to confirm the pairing... {:>3} s left ",
            left.as_secs()
        );
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs(1).min(left));
        state = match d.call(&AdminRequest::PairStatus {
            user: user.into(),
            pairing_id: state.pairing_id.clone(),
        })? {
            AdminResponse::Pairing(p) => p,
            other => return Err(unexpected(&other)),
        };
    }
    println!("\r{user}: paired (pairing {}).{:30}", state.pairing_id, "");
    Ok(())
}

/// Shows an account's state. A name neither the system nor toopherd knows is an error
/// (a typo, most often), never "not enrolled"; a record of a name the system does not
/// know is shown, with a note, so it can be found and removed.
fn report_status(st: &AccountStatus, json: bool) -> Result<(), Failure> {
    let gone = !user_exists(&st.user);
    if gone && !st.has_record() {
        return Err(no_such_user(&st.user));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(st).unwrap_or_default());
    } else {
        print_status(st);
    }
    if gone {
        eprintln!(
            "toopherctl: note: the system has no user {0}; toopherd keeps this record of it \
             (`toopherctl remove {0}` deletes it)",
            st.user
        );
    }
    Ok(())
}

/// For requests that change an account's record or act for it at the Toopher service
/// (suspend, resume, unlock, pair, reset links, terminals, registration approval): a name
/// that neither the system nor toopherd knows is refused before toopherd acts on it.
fn known_somewhere(d: &mut AdminLink, user: &str) -> Result<(), Failure> {
    if user_exists(user) {
        return Ok(());
    }
    match d.call(&AdminRequest::Status { user: user.into() })? {
        AdminResponse::Status(st) if st.has_record() => Ok(()),
        AdminResponse::Status(_) => Err(no_such_user(user)),
        other => Err(unexpected(&other)),
    }
}

fn print_status(st: &AccountStatus) {
    let state = match st.state {
        EnrollmentState::None => "not enrolled",
        EnrollmentState::Pending => "pending (not yet activated)",
        EnrollmentState::Active => "active",
    };
    let opt = |t: Option<u64>| t.map_or_else(|| "never".to_string(), fmt_time);
    println!("user:                {}", st.user);
    println!("backend:             {}", st.backend);
    println!("state:               {state}");
    println!(
        "enabled:             {}",
        if st.enabled {
            "yes"
        } else {
            "no (suspended by an administrator)"
        }
    );
    if let Some(p) = &st.pairing_id {
        println!("pairing:             {p}");
    }
    if let Some(t) = st.activated_at {
        println!("activated:           {}", fmt_time(t));
    }
    if st.state == EnrollmentState::Pending {
        println!("expires:             {}", opt(st.expires_at));
    }
    let hosts = st.hosts.as_deref().cloned().unwrap_or_default();
    let on = |host: Option<String>| host.map_or_else(String::new, |h| format!(" on {h}"));
    println!(
        "last success:        {}{}",
        opt(st.last_success_at),
        on(hosts.last_success)
    );
    println!(
        "last failure:        {}{}",
        opt(st.last_failure_at),
        on(hosts.last_failure)
    );
    println!("recovery codes left: {}", st.recovery_codes_left);
    if let Some(t) = st.locked_until {
        println!("rate-limited until:  {}", fmt_time(t));
    }
    if st.lock_level > 0 {
        println!(
            "locks so far:        {} (the next lasts longer; `toopherctl unlock` resets)",
            st.lock_level
        );
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` (days-to-civil, H. Hinnant's algorithm).
fn fmt_time(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times() {
        assert_eq!(super::fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::fmt_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(super::fmt_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
