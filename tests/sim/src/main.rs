//! `toopher-sim`: run the Toopher API simulator by hand or from scripts.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toopher_sim::{AutoAnswer, NewUser, SimEvent, SimOptions, Simulator};

const USAGE: &str = "\
toopher-sim: a simulator of the Toopher REST API v1

USAGE: toopher-sim [OPTIONS]

  --listen ADDR          address to listen on (default 127.0.0.1:0)
  --port N               port on 127.0.0.1 (0 = ephemeral)
  --http                 plain HTTP instead of HTTPS
  --ca-file PATH         where to write the CA certificate (PEM)
  --hostname NAME        extra name in the server certificate (repeatable)
  --key KEY              consumer key (default random)
  --secret SECRET        consumer secret (default random)
  --user NAME[:BASE32]   create a paired user, optionally with this TOTP secret (repeatable)
  --auto-grant MS        grant every push after MS milliseconds
  --auto-deny MS         deny every push after MS milliseconds
  --request-ttl SECS     pending pushes time out after SECS seconds
  --timestamp-window S   accepted oauth_timestamp skew (default 300)
  --string-reason-codes  send reason_code as a string
  --interactive          approve pushes from this terminal (default when stdin is a TTY)
  --no-interactive       never read stdin
  -h, --help             this help

The first line on stdout is JSON: {\"url\",\"control_url\",\"consumer_key\",
\"consumer_secret\",\"ca_file\",\"port\",\"pid\",\"users\":[...]}. Everything else
goes to stderr. The control interface (unsigned JSON) is under /_sim/.
";

fn die(msg: &str) -> ! {
    eprintln!("toopher-sim: {msg}\n\n{USAGE}");
    std::process::exit(2)
}

struct Args {
    opts: SimOptions,
    users: Vec<(String, Option<String>)>,
    interactive: Option<bool>,
}

fn parse_args() -> Args {
    let mut opts = SimOptions::default();
    let mut users = Vec::new();
    let mut interactive = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value")))
        };
        let num = |v: String, name: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| die(&format!("{name}: not a number")))
        };
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0)
            }
            "--listen" => {
                opts.listen = val("--listen")
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|_| die("--listen: not an address like 127.0.0.1:8443"))
            }
            "--port" => {
                let p = num(val("--port"), "--port");
                let p = u16::try_from(p).unwrap_or_else(|_| die("--port: too large"));
                opts.listen = SocketAddr::from(([127, 0, 0, 1], p));
            }
            "--http" => opts.tls = false,
            "--ca-file" => opts.ca_file = Some(PathBuf::from(val("--ca-file"))),
            "--hostname" => opts.hostnames.push(val("--hostname")),
            "--key" => opts.consumer_key = Some(val("--key")),
            "--secret" => opts.consumer_secret = Some(val("--secret")),
            "--user" => {
                let v = val("--user");
                match v.split_once(':') {
                    Some((n, s)) => users.push((n.to_owned(), Some(s.to_owned()))),
                    None => users.push((v, None)),
                }
            }
            "--auto-grant" | "--auto-deny" => {
                let ms = num(val(&a), &a);
                opts.auto_answer = Some(AutoAnswer {
                    grant: a == "--auto-grant",
                    after_ms: ms,
                    reason: None,
                    automated: false,
                });
            }
            "--request-ttl" => {
                opts.request_ttl = Some(Duration::from_secs(num(
                    val("--request-ttl"),
                    "--request-ttl",
                )))
            }
            "--timestamp-window" => {
                opts.timestamp_window =
                    Duration::from_secs(num(val("--timestamp-window"), "--timestamp-window"))
            }
            "--string-reason-codes" => opts.string_reason_codes = true,
            "--interactive" => interactive = Some(true),
            "--no-interactive" => interactive = Some(false),
            other => die(&format!("unknown argument {other}")),
        }
    }
    Args {
        opts,
        users,
        interactive,
    }
}

const HELP: &str = "commands: y [ID] grant (newest pending by default) | n [ID] [reason] deny | \
t [ID] time out | l list | otp USER current code | phrase PHRASE complete a pairing | \
q quit";

#[tokio::main]
async fn main() {
    let args = parse_args();
    let sim = match Simulator::start(args.opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("toopher-sim: cannot start: {e}");
            std::process::exit(1)
        }
    };
    let mut created = Vec::new();
    for (name, secret) in &args.users {
        let spec = NewUser {
            totp_secret: secret.clone(),
            ..NewUser::paired(name.clone())
        };
        match sim.create_user(&spec) {
            Ok(u) => created.push(u),
            Err(e) => {
                eprintln!("toopher-sim: --user {name}: {e}");
                std::process::exit(2)
            }
        }
    }
    let mut info = sim.info_json();
    info["users"] = serde_json::to_value(&created).unwrap_or_default();
    println!("{info}");
    let _ = std::io::stdout().flush();

    let interactive = args
        .interactive
        .unwrap_or_else(|| std::io::IsTerminal::is_terminal(&std::io::stdin()));
    eprintln!("toopher-sim listening on {}", sim.base_url());
    eprintln!("  consumer key:    {}", sim.consumer_key());
    eprintln!("  consumer secret: {}", sim.consumer_secret());
    if let Some(ca) = sim.ca_file() {
        eprintln!("  CA file:         {}", ca.display());
    }
    eprintln!(
        "  control:         {}/ (see tests/sim/README.md)",
        sim.control_url()
    );
    for u in &created {
        eprintln!(
            "  user {}: pairing {} TOTP secret {}",
            u.name,
            u.pairing_id.as_deref().unwrap_or("-"),
            u.totp_secret.as_deref().unwrap_or("-")
        );
    }

    let mut events = sim.subscribe();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(16);
    if interactive {
        eprintln!("{HELP}");
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if line_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        drop(line_tx);
    }
    let mut stdin_open = interactive;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .unwrap_or_else(|e| {
            eprintln!("toopher-sim: cannot watch SIGTERM: {e}");
            std::process::exit(1)
        });
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            ev = events.recv() => match ev {
                Ok(SimEvent::NewRequest { id, user_name, terminal_name, action_name }) => {
                    eprintln!(
                        "\n[push] {id}\n  user {user_name:?}, terminal {terminal_name:?}, action {action_name:?}"
                    );
                    if interactive {
                        eprint!("  approve? [y/n/t] > ");
                    }
                }
                Ok(SimEvent::Settled { id, granted }) => {
                    eprintln!("[answer] {id}: {}", if granted { "granted" } else { "not granted" });
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
            line = line_rx.recv(), if stdin_open => {
                let Some(line) = line else {
                    stdin_open = false;
                    continue;
                };
                if !command(&sim, line.trim()) {
                    break;
                }
            }
        }
    }
    // Dropping the handle stops the server and removes a CA directory it created.
    drop(sim);
}

/// One interactive command; false to quit.
fn command(sim: &toopher_sim::SimHandle, line: &str) -> bool {
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let rest: Vec<&str> = words.collect();
    let target = |rest: &[&str]| -> String {
        rest.first()
            .filter(|w| w.len() == 36 && w.contains('-'))
            .map_or_else(|| "latest".to_owned(), |s| (*s).to_owned())
    };
    let result = match cmd {
        "" => Ok(()),
        "q" | "quit" | "exit" => return false,
        "y" | "yes" | "grant" => sim.grant(&target(&rest)),
        "n" | "no" | "deny" => {
            let t = target(&rest);
            let reason_words: Vec<&str> = rest.iter().copied().filter(|w| *w != t).collect();
            let reason = if reason_words.is_empty() {
                "Denied on the simulator's terminal".to_owned()
            } else {
                reason_words.join(" ")
            };
            sim.deny(&t, &reason)
        }
        "t" | "timeout" => sim.time_out(&target(&rest)),
        "l" | "list" => {
            for r in sim.requests() {
                let state = if r.pending {
                    "pending"
                } else if r.granted {
                    "granted"
                } else {
                    "denied"
                };
                eprintln!(
                    "  {} {state:8} {} @ {} ({})",
                    r.id, r.user_name, r.terminal_name, r.action_name
                );
            }
            Ok(())
        }
        "otp" => {
            let name = rest.first().copied().unwrap_or("");
            match sim.active_pairing_id(name) {
                Some(p) => sim.current_otp(&p).map(|c| eprintln!("  {name}: {c}")),
                None => {
                    eprintln!("  no active pairing for {name:?}");
                    Ok(())
                }
            }
        }
        "phrase" => sim
            .enter_pairing_phrase(&rest.join(" "))
            .map(|id| eprintln!("  pairing {id} completed")),
        _ => {
            eprintln!("{HELP}");
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("  {e}");
    }
    true
}
