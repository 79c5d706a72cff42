//! A temporary PostgreSQL cluster for the fleet tests: Debian's `initdb` and `pg_ctl` run
//! as an unprivileged user (`postgres` when the tests run as root, else the test's own
//! user) in a temporary directory, never the machine's own cluster or /etc/postgresql.
//! It listens on a unix socket in that directory and on a free loopback TCP port,
//! TCP with TLS only, a certificate from a test CA (for `sslmode=verify-full`), and
//! has one database and one role with a password. Dropping it (also while a test panics)
//! stops the server and removes the directory.
//!
//! A missing PostgreSQL is a loud failure: install Debian's `postgresql` (scripts/test does).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Override for the directory holding `initdb`, `pg_ctl`, `psql` and `pg_dump`.
pub const BIN_ENV: &str = "TOOPHER_PG_BIN";
const SUPERUSER: &str = "toopher_admin";
pub const ROLE: &str = "toopherd";
pub const DATABASE: &str = "toopher";

pub struct TempPostgres {
    /// Removed on drop.
    top: PathBuf,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    /// Who runs the server: (uid, gid), or `None` for the test's own user.
    owner: Option<(u32, u32)>,
    running: bool,
    pub socket_dir: PathBuf,
    pub port: u16,
    /// The role's password (the harness's own random one).
    pub password: String,
    superuser_password: String,
    /// The test CA's certificate, with `tls`.
    pub ca_file: Option<PathBuf>,
}

/// Newest `/usr/lib/postgresql/*/bin` with `initdb`, or [`BIN_ENV`].
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "{BIN_ENV}={} has no initdb",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed: the fleet tests \
             need Debian's `postgresql` package (apt-get install postgresql; scripts/test \
             installs it), or {BIN_ENV} pointing at a directory with them"
        ),
    }
}

fn random_token() -> String {
    let mut b = [0u8; 18];
    let mut f = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut f, &mut b).expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A loopback port that was free a moment ago (the start retries when it is taken).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// The `postgres` system account when running as root: initdb refuses root.
fn server_owner() -> Option<(u32, u32)> {
    if !crate::is_root() {
        return None;
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam gets a valid C string; the result is read at once, before any other
    // passwd call in this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "the `postgres` system user is missing: install Debian's postgresql package"
    );
    // SAFETY: pw is non-null and points at getpwnam's static record.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

fn write_private(path: &Path, text: &str, mode: u32, owner: Option<(u32, u32)>) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    chown(path, owner);
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl TempPostgres {
    /// A cluster reached over its unix socket or over TCP with TLS only (a certificate
    /// for `localhost` and 127.0.0.1 from a test CA; plain TCP is rejected).
    pub fn start() -> TempPostgres {
        let bin = bin_dir();
        let owner = server_owner();
        let top = tempfile::Builder::new()
            .prefix("toopher-pg.")
            .tempdir_in("/tmp")
            .expect("temporary directory")
            .keep();
        // Others traverse it to reach the socket (toopherd may run as another user).
        std::fs::set_permissions(&top, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let cluster = top.join("cluster");
        let socket_dir = top.join("sock");
        for d in [&cluster, &socket_dir] {
            std::fs::create_dir(d).expect("mkdir");
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            chown(d, owner);
        }
        let mut pg = TempPostgres {
            data: cluster.join("data"),
            log: cluster.join("server.log"),
            top,
            bin,
            owner,
            running: false,
            socket_dir,
            port: 0,
            password: random_token(),
            superuser_password: random_token(),
            ca_file: None,
        };
        pg.initdb();
        pg.configure(&cluster);
        // A port can be taken between choosing and binding it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port();
            pg.set_port();
            match pg.pg_ctl_start() {
                Ok(()) => {
                    pg.create_role_and_database();
                    return pg;
                }
                Err(e) => last = e,
            }
        }
        panic!("the temporary PostgreSQL did not start:\n{last}");
    }

    /// Runs a server program as the cluster's owner.
    fn as_owner(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .current_dir(&self.top)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            // std drops the supplementary groups when it sets the uid as root.
            c.uid(uid).gid(gid);
        }
        c
    }

    fn initdb(&self) {
        let pwfile = self.top.join("cluster/pwfile");
        write_private(&pwfile, &self.superuser_password, 0o600, self.owner);
        let out = self
            .as_owner("initdb")
            .arg("-D")
            .arg(&self.data)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        let _ = std::fs::remove_file(&pwfile);
        check("initdb", &out);
    }

    fn configure(&mut self, cluster: &Path) {
        let mut conf = format!(
            "\n# toopher_tests\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = 60\n\
             shared_buffers = 16MB\nlog_min_messages = warning\n",
            self.socket_dir.display()
        );
        let mut hba = "local all all scram-sha-256\n".to_owned();
        {
            let (ca, cert, key) = test_certificates();
            let ca_file = self.top.join("ca.crt");
            std::fs::write(&ca_file, ca).expect("write ca.crt");
            let cert_file = cluster.join("server.crt");
            let key_file = cluster.join("server.key");
            write_private(&cert_file, &cert, 0o644, self.owner);
            write_private(&key_file, &key, 0o600, self.owner);
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cert_file.display(),
                key_file.display()
            ));
            hba.push_str("hostssl all all 127.0.0.1/32 scram-sha-256\n");
            hba.push_str("hostnossl all all 127.0.0.1/32 reject\n");
            self.ca_file = Some(ca_file);
        }
        append(&self.data.join("postgresql.conf"), &conf);
        std::fs::write(self.data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn set_port(&self) {
        append(
            &self.data.join("postgresql.conf"),
            &format!("port = {}\n", self.port),
        );
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let out = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|e| format!("run pg_ctl: {e}"))?;
        if out.status.success() {
            self.running = true;
            return Ok(());
        }
        Err(format!(
            "pg_ctl start: {}{}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        ))
    }

    fn create_role_and_database(&self) {
        self.psql_admin(&format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD {};",
            sql_literal(&self.password)
        ));
        self.psql_admin(&format!("CREATE DATABASE {DATABASE} OWNER {ROLE};"));
    }

    /// Runs `sql` as the cluster's superuser over the unix socket; returns psql's output
    /// (unaligned, tuples only). Panics on an error.
    pub fn psql_admin(&self, sql: &str) -> String {
        self.psql_admin_in("postgres", sql)
    }

    /// [`TempPostgres::psql_admin`] in database `db`.
    pub fn psql_admin_in(&self, db: &str, sql: &str) -> String {
        let out = self
            .psql()
            .env("PGPASSWORD", &self.superuser_password)
            .args(["-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        check("psql", &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Holds `user`'s advisory lock (the one toopherd takes before deciding about the
    /// user) from another session for `secs` seconds, as anyone with CONNECT on the
    /// database could; blocks until it lets go.
    pub fn hold_user_lock(&self, user: &str, secs: u32) {
        assert!(
            user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "a plain user name: {user}"
        );
        // toopherd's key: the first 8 bytes (big-endian) of
        // SHA-256("toopherd user lock\0" || user).
        let key = format!(
            "('x' || encode(substring(sha256('toopherd user lock'::bytea || '\\x00'::bytea \
             || convert_to('{user}', 'UTF8')) from 1 for 8), 'hex'))::bit(64)::bigint"
        );
        self.psql_admin_in(
            DATABASE,
            &format!("SELECT pg_advisory_lock({key}); SELECT pg_sleep({secs});"),
        );
    }

    /// psql as the test's own user, for connections the tests make as the role.
    pub fn psql(&self) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::null());
        c
    }

    /// The role's URL over TCP: `sslmode=verify-full` for the host name `localhost`,
    /// the server's certificate from the test CA ([`TempPostgres::ca_file`]). toopherd
    /// takes no plain TCP, not even on loopback.
    pub fn url_tcp(&self) -> String {
        format!(
            "postgresql://{ROLE}@localhost:{}/{DATABASE}?sslmode=verify-full",
            self.port
        )
    }

    /// The role's URL over TCP asking for no TLS, which toopherd refuses.
    pub fn url_plain_tcp(&self) -> String {
        format!(
            "postgresql://{ROLE}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.port
        )
    }

    /// The role's URL over the unix socket.
    pub fn url_socket(&self) -> String {
        let host: String = self
            .socket_dir
            .to_string_lossy()
            .replace('%', "%25")
            .replace('/', "%2F");
        format!("postgresql://{ROLE}@{host}:{}/{DATABASE}", self.port)
    }

    /// A plain-text dump of the database, as an attacker with a backup would see it.
    pub fn dump(&self) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .env_clear()
            .env("PGPASSWORD", &self.superuser_password)
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER, DATABASE])
            .output()
            .expect("run pg_dump");
        check("pg_dump", &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (`fast`: connections are closed, as in a restart).
    pub fn stop(&mut self) {
        let out = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"])
            .output()
            .expect("run pg_ctl stop");
        check("pg_ctl stop", &out);
        self.running = false;
    }

    /// Starts a stopped server again on the same port and socket.
    pub fn restart(&mut self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("the temporary PostgreSQL did not start again:\n{e}");
        }
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The postmaster's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The directory removed on drop.
    pub fn dir(&self) -> &Path {
        &self.top
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.running || self.pid().is_some() {
            let pid = self.pid();
            let stopped = self
                .as_owner("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-w", "-t", "30", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !stopped && let Some(pid) = pid.filter(|&p| p > 1) {
                // SAFETY: kill has no memory preconditions; pid is the postmaster we started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.top);
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append");
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (CA certificate, server certificate, server key), PEM: a test CA and a certificate
/// for `localhost` and 127.0.0.1 signed by it.
fn test_certificates() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "toopher_tests PostgreSQL CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_key = KeyPair::generate().expect("server key");
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("server certificate");
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` runs (a zombie waiting for init to reap it does not).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    }

    fn query_as_role(pg: &TempPostgres, conninfo: &str, password: &str) -> Output {
        pg.psql()
            .env("PGPASSWORD", password)
            .arg(conninfo)
            .args(["-c", "SELECT current_user || ' ' || current_database()"])
            .output()
            .expect("run psql")
    }

    #[test]
    fn starts_accepts_the_role_and_cleans_up() {
        let pg = TempPostgres::start();
        let (dir, pid) = (pg.dir().to_path_buf(), pg.pid().expect("postmaster.pid"));
        assert!(alive(pid));
        let ca = pg.ca_file.clone().expect("a CA with tls");

        // The unix socket, and TCP with verify-full against the test CA.
        let socket = query_as_role(&pg, &pg.url_socket(), &pg.password);
        check("psql over the socket", &socket);
        assert_eq!(
            String::from_utf8_lossy(&socket.stdout).trim(),
            "toopherd toopher"
        );
        let tls = format!("{}&sslrootcert={}", pg.url_tcp(), ca.display());
        let out = query_as_role(&pg, &tls, &pg.password);
        check("psql with verify-full", &out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "toopherd toopher"
        );

        // Plain TCP is rejected, and so is a wrong password.
        let plain = pg.url_plain_tcp();
        assert!(!query_as_role(&pg, &plain, &pg.password).status.success());
        assert!(!query_as_role(&pg, &tls, "wrong").status.success());
        // Verify-full checks the name: 127.0.0.2 is not in the certificate (and not
        // listened on); a certificate for another CA would fail the same way.
        let wrong_root = format!("{}&sslrootcert=/dev/null", pg.url_tcp());
        assert!(
            !query_as_role(&pg, &wrong_root, &pg.password)
                .status
                .success()
        );

        drop(pg);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!alive(pid), "postmaster {pid} still runs");
    }

    #[test]
    fn a_panicking_test_still_cleans_up() {
        let (tx, rx) = std::sync::mpsc::channel();
        let joined = std::thread::spawn(move || {
            let pg = TempPostgres::start();
            tx.send((pg.dir().to_path_buf(), pg.pid().expect("pid")))
                .expect("send");
            panic!("a test fails while its cluster runs");
        })
        .join();
        assert!(joined.is_err(), "the thread panicked");
        let (dir, pid) = rx.recv().expect("the cluster started");
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!alive(pid), "postmaster {pid} still runs");
    }

    #[test]
    fn stops_and_starts_again_with_its_data() {
        let mut pg = TempPostgres::start();
        pg.psql_admin_in(
            DATABASE,
            "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7);",
        );
        pg.stop();
        assert!(pg.pid().is_none());
        assert!(
            !query_as_role(&pg, &pg.url_socket(), &pg.password)
                .status
                .success()
        );
        pg.restart();
        assert_eq!(pg.psql_admin_in(DATABASE, "SELECT v FROM kept").trim(), "7");
        assert!(pg.dump().contains("CREATE TABLE public.kept"));
    }
}
