//! The fleet credentials file: the fleet key that seals secrets in the shared database
//! and, when the database asks for one, its password. Never in toopherd.toml, which is
//! world-readable: a TOML file of its own, 0600 (or 0400) and owned by toopherd's user or
//! root, or a systemd credential (`LoadCredential=toopherd-fleet:/etc/toopher/fleet.toml`).
//!
//! ```toml
//! key_id = 2
//! key = "base64 or hex of 32 bytes"
//! password = "the database role's password"   # optional
//!
//! [[previous_keys]]                            # accepted for opening until rotate-key ran
//! key_id = 1
//! key = "..."
//! ```
//!
//! Nothing read here ever reaches an error message or a debug print: errors name the file,
//! the field and the line, never the text.

use super::seal::{DuplicateKeyId, FleetKey, KEY_LEN, KeyId, Keyring, SealError};
use base64::Engine;
use serde::Deserialize;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The credential's name under systemd's `$CREDENTIALS_DIRECTORY`.
pub const SYSTEMD_CREDENTIAL: &str = "toopherd-fleet";
/// A credentials file is a few hundred bytes; anything far larger is not one.
const MAX_LEN: u64 = 64 * 1024;

#[derive(Debug)]
pub enum CredentialsError {
    /// Neither `credentials_file` nor a systemd credential.
    NotConfigured,
    /// A relative `credentials_file` outside systemd's credentials directory.
    Relative {
        path: PathBuf,
    },
    NotFound {
        path: PathBuf,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A symlink, a directory, a device.
    NotAFile {
        path: PathBuf,
    },
    TooLarge {
        path: PathBuf,
    },
    /// Group or others have access.
    Permissions {
        path: PathBuf,
        mode: u32,
    },
    Owner {
        path: PathBuf,
        uid: u32,
    },
    /// Not TOML, or not the expected fields; the line, never the text.
    Syntax {
        path: PathBuf,
        line: Option<usize>,
    },
    /// A key that is not 32 bytes of base64 or hex.
    BadKey {
        path: PathBuf,
        field: String,
    },
    EmptyPassword {
        path: PathBuf,
    },
    DuplicateKeyId {
        path: PathBuf,
        key_id: KeyId,
    },
}

impl std::fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use CredentialsError::*;
        match self {
            NotConfigured => write!(
                f,
                "[store] kind = \"postgres\" needs the fleet credentials: set credentials_file, \
                 or give toopherd the systemd credential {SYSTEMD_CREDENTIAL} (LoadCredential=)"
            ),
            Relative { path } => write!(
                f,
                "credentials_file {} is relative: give an absolute path (a bare name is \
                 looked up in $CREDENTIALS_DIRECTORY only when systemd sets it)",
                path.display()
            ),
            NotFound { path } => write!(
                f,
                "credentials file {} does not exist (`toopherctl store keygen` writes one)",
                path.display()
            ),
            Io { path, error } => write!(f, "credentials file {}: {error}", path.display()),
            NotAFile { path } => write!(
                f,
                "credentials file {} is not a plain file (symlinks are refused)",
                path.display()
            ),
            TooLarge { path } => write!(
                f,
                "credentials file {} is larger than {MAX_LEN} bytes; it is not a credentials file",
                path.display()
            ),
            Permissions { path, mode } => write!(
                f,
                "credentials file {p} has mode {mode:04o}; it holds the fleet key and must not \
                 be readable by group or others (chmod 600 {p})",
                p = path.display()
            ),
            Owner { path, uid } => write!(
                f,
                "credentials file {} is owned by uid {uid}; it must belong to toopherd's user \
                 or root",
                path.display()
            ),
            Syntax { path, line } => {
                write!(f, "credentials file {} is not valid", path.display())?;
                if let Some(line) = line {
                    write!(f, " at line {line}")?;
                }
                f.write_str(
                    ": expected key_id = NUMBER, key = \"BASE64 or HEX\", optionally \
                     password = \"...\" and [[previous_keys]] tables with key_id and key",
                )
            }
            BadKey { path, field } => write!(
                f,
                "credentials file {}: {field} is not {KEY_LEN} bytes of base64 or hex \
                 (`toopherctl store keygen` makes one)",
                path.display()
            ),
            EmptyPassword { path } => write!(
                f,
                "credentials file {}: password is empty; remove the line if the database \
                 needs none",
                path.display()
            ),
            DuplicateKeyId { path, key_id } => write!(
                f,
                "credentials file {}: key id {key_id} is given twice; each key needs its own",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CredentialsError {}

/// The fleet keys and the database password.
pub struct Credentials {
    pub keyring: Keyring,
    password: Option<Zeroizing<String>>,
}

impl Credentials {
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref().map(String::as_str)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("keyring", &self.keyring)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct RawFile {
    key_id: KeyId,
    key: String,
    password: Option<String>,
    #[serde(default)]
    previous_keys: Vec<RawKey>,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key_id: KeyId,
    key: String,
}

/// Where the credentials are: `configured` (absolute; a bare name inside systemd's
/// credentials directory), else the systemd credential [`SYSTEMD_CREDENTIAL`].
pub fn resolve(
    configured: Option<&Path>,
    credentials_directory: Option<&Path>,
) -> Result<PathBuf, CredentialsError> {
    match (configured, credentials_directory) {
        (Some(p), _) if p.is_absolute() => Ok(p.to_path_buf()),
        (Some(p), Some(dir)) if p.components().count() == 1 => Ok(dir.join(p)),
        (Some(p), _) => Err(CredentialsError::Relative {
            path: p.to_path_buf(),
        }),
        (None, Some(dir)) => Ok(dir.join(SYSTEMD_CREDENTIAL)),
        (None, None) => Err(CredentialsError::NotConfigured),
    }
}

/// [`resolve`] with systemd's `$CREDENTIALS_DIRECTORY` from the environment.
pub fn resolve_from_env(configured: Option<&Path>) -> Result<PathBuf, CredentialsError> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    resolve(configured, dir.as_deref())
}

/// Reads and checks the credentials file. It must be a plain file (not a symlink) that
/// only its owner can read, owned by this process's user or root.
pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let text = read_private(path, euid)?;
    parse(path, &text)
}

fn read_private(path: &Path, euid: u32) -> Result<Zeroizing<String>, CredentialsError> {
    let io = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => CredentialsError::NotFound {
            path: path.to_path_buf(),
        },
        _ if error.raw_os_error() == Some(libc::ELOOP) => CredentialsError::NotAFile {
            path: path.to_path_buf(),
        },
        _ => CredentialsError::Io {
            path: path.to_path_buf(),
            error,
        },
    };
    // O_NOFOLLOW: the checks below are about the file read, not a link's target;
    // O_NONBLOCK: a FIFO planted there does not hang toopherd's start.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(CredentialsError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(CredentialsError::Owner {
            path: path.to_path_buf(),
            uid: meta.uid(),
        });
    }
    if meta.len() > MAX_LEN {
        return Err(CredentialsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(MAX_LEN + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(CredentialsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(CredentialsError::Syntax {
                path: path.to_path_buf(),
                line: None,
            })
        }
    }
}

fn parse(path: &Path, text: &str) -> Result<Credentials, CredentialsError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| CredentialsError::Syntax {
        path: path.to_path_buf(),
        // Only the position: toml's message may quote the offending text.
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
    })?;
    let key = |id: KeyId, text: &str, field: String| {
        decode_key(text)
            .map(|bytes| FleetKey::new(id, bytes))
            .ok_or_else(|| CredentialsError::BadKey {
                path: path.to_path_buf(),
                field,
            })
    };
    let current = key(raw.key_id, &raw.key, "key".into())?;
    let previous = raw
        .previous_keys
        .iter()
        .enumerate()
        .map(|(i, k)| key(k.key_id, &k.key, format!("previous_keys[{i}].key")))
        .collect::<Result<Vec<_>, _>>()?;
    let keyring = Keyring::new(current, previous).map_err(|DuplicateKeyId(key_id)| {
        CredentialsError::DuplicateKeyId {
            path: path.to_path_buf(),
            key_id,
        }
    })?;
    if raw.password.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(CredentialsError::EmptyPassword {
            path: path.to_path_buf(),
        });
    }
    Ok(Credentials {
        keyring,
        password: raw.password.as_ref().map(|p| Zeroizing::new(p.clone())),
    })
}

/// 32 bytes as 64 hex digits or as base64 (padded or not). The two cannot be confused:
/// base64 of 32 bytes is 43 or 44 characters.
fn decode_key(text: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let text = text.trim();
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    if text.len() == 2 * KEY_LEN {
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        return Some(out);
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    for engine in engines {
        let mut buf = Zeroizing::new([0u8; KEY_LEN + 3]);
        if let Ok(n) = engine.decode_slice(text.as_bytes(), &mut *buf)
            && n == KEY_LEN
        {
            out.copy_from_slice(&buf[..KEY_LEN]);
            return Some(out);
        }
    }
    None
}

/// A new credentials file with a fresh fleet key under `key_id`: what
/// `toopherctl store keygen` prints. Every host of the fleet gets the same file.
pub fn keygen(key_id: KeyId) -> Result<Zeroizing<String>, SealError> {
    let key = FleetKey::generate(key_id)?;
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.bytes()));
    Ok(Zeroizing::new(format!(
        "# toopherd fleet credentials: the same file on every host of the fleet.\n\
         # Keep it 0600 and owned by toopherd's user or root (or give it to toopherd as the\n\
         # systemd credential {SYSTEMD_CREDENTIAL}). Whoever has this key and a dump of the\n\
         # database has every TOTP secret of the fleet.\n\
         key_id = {key_id}\n\
         key = \"{}\"\n\
         # The database role's password, if it needs one:\n\
         # password = \"...\"\n\
         \n\
         # After a new key: keep the old one here until `toopherctl store rotate-key` ran.\n\
         # [[previous_keys]]\n\
         # key_id = {}\n\
         # key = \"...\"\n",
        encoded.as_str(),
        key_id.saturating_sub(1),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::seal::Purpose;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("toopherd-cred-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn write(d: &Dir, text: &str, mode: u32) -> PathBuf {
        let p = d.0.join("fleet.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn keygen_output_parses_and_seals() {
        let d = dir("keygen");
        let text = keygen(4).unwrap();
        let p = write(&d, &text, 0o600);
        let c = load(&p).unwrap();
        assert_eq!(c.keyring.current_id(), 4);
        assert_eq!(c.password(), None);
        let sealed = c.keyring.seal(Purpose::TotpSecret, "alice", b"x").unwrap();
        assert_eq!(
            c.keyring
                .open(Purpose::TotpSecret, "alice", &sealed)
                .unwrap()
                .as_slice(),
            b"x"
        );
        // Two runs give two keys.
        assert_ne!(keygen(4).unwrap().as_str(), text.as_str());
    }

    #[test]
    fn hex_and_base64_are_the_same_key() {
        let d = dir("enc");
        let a = load(&write(&d, &format!("key_id = 1\nkey = \"{HEX}\"\n"), 0o600)).unwrap();
        let b = load(&write(
            &d,
            &format!("key_id = 1\nkey = \"{}\"\n", B64.trim_end_matches('=')),
            0o400,
        ))
        .unwrap();
        let sealed = a.keyring.seal(Purpose::TotpSecret, "u", b"s").unwrap();
        assert!(b.keyring.open(Purpose::TotpSecret, "u", &sealed).is_ok());
    }

    #[test]
    fn password_and_previous_keys() {
        let d = dir("full");
        let p = write(
            &d,
            &format!(
                "key_id = 2\nkey = \"{B64}\"\npassword = \"hunter2\"\n\
                 [[previous_keys]]\nkey_id = 1\nkey = \"{}\"\n",
                HEX.replace('0', "f")
            ),
            0o600,
        );
        let c = load(&p).unwrap();
        assert_eq!(c.password(), Some("hunter2"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn loose_permissions_are_refused() {
        let d = dir("perm");
        for mode in [0o640, 0o604, 0o660, 0o644] {
            let p = write(&d, &format!("key_id = 1\nkey = \"{B64}\"\n"), mode);
            let e = load(&p).unwrap_err();
            assert!(
                matches!(e, CredentialsError::Permissions { mode: m, .. } if m == mode),
                "{e}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn a_foreign_owner_is_refused() {
        let d = dir("owner");
        let p = write(&d, &format!("key_id = 1\nkey = \"{B64}\"\n"), 0o600);
        // The check itself, with another uid as "toopherd's user": the file belongs to the
        // test's user (root or not), so it is refused unless that is root.
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let e = read_private(&p, me.wrapping_add(1));
        if me == 0 {
            assert!(e.is_ok(), "root's files are accepted");
        } else {
            assert!(matches!(e, Err(CredentialsError::Owner { uid, .. }) if uid == me));
        }
    }

    #[test]
    fn symlinks_and_directories_are_refused() {
        let d = dir("link");
        let target = write(&d, &format!("key_id = 1\nkey = \"{B64}\"\n"), 0o600);
        let link = d.0.join("link.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            load(&link),
            Err(CredentialsError::NotAFile { .. })
        ));
        assert!(matches!(load(&d.0), Err(CredentialsError::NotAFile { .. })));
        assert!(matches!(
            load(&d.0.join("absent")),
            Err(CredentialsError::NotFound { .. })
        ));
    }

    #[test]
    fn errors_never_quote_the_file() {
        let d = dir("syntax");
        let secret = "s3cr3t-do-not-print";
        for text in [
            format!("key_id = 1\nkey = \"{secret}\n"),
            format!("key_id = \"{secret}\"\nkey = \"{B64}\"\n"),
            format!("key_id = 1\nkey = \"{B64}\"\npasword = \"{secret}\"\n"),
            format!("key_id = 1\nkey = \"{secret}\"\n"),
            format!("key_id = 1\nkey = \"{B64}\"\npassword = {secret}\n"),
        ] {
            let e = load(&write(&d, &text, 0o600)).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(secret), "{shown}");
        }
        let e = load(&write(&d, "key_id = 1\nkey = \"abc\"\n", 0o600)).unwrap_err();
        assert!(
            matches!(e, CredentialsError::BadKey { ref field, .. } if field == "key"),
            "{e}"
        );
        let e = load(&write(&d, "key_id = 1\n\nkey = [\n", 0o600)).unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = load(&write(
            &d,
            &format!("key_id = 1\nkey = \"{B64}\"\npassword = \"\"\n"),
            0o600,
        ))
        .unwrap_err();
        assert!(matches!(e, CredentialsError::EmptyPassword { .. }), "{e}");
        let e = load(&write(
            &d,
            &format!(
                "key_id = 1\nkey = \"{B64}\"\n[[previous_keys]]\nkey_id = 1\nkey = \"{HEX}\"\n"
            ),
            0o600,
        ))
        .unwrap_err();
        assert!(
            matches!(e, CredentialsError::DuplicateKeyId { key_id: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn systemd_credentials_directory() {
        let dir = Path::new("/run/credentials/toopherd.service");
        assert_eq!(
            resolve(None, Some(dir)).unwrap(),
            dir.join(SYSTEMD_CREDENTIAL)
        );
        assert_eq!(
            resolve(Some(Path::new("fleet")), Some(dir)).unwrap(),
            dir.join("fleet")
        );
        assert_eq!(
            resolve(Some(Path::new("/etc/toopher/fleet.toml")), Some(dir)).unwrap(),
            Path::new("/etc/toopher/fleet.toml")
        );
        assert!(matches!(
            resolve(Some(Path::new("fleet")), None),
            Err(CredentialsError::Relative { .. })
        ));
        assert!(matches!(
            resolve(Some(Path::new("a/b")), Some(dir)),
            Err(CredentialsError::Relative { .. })
        ));
        assert!(matches!(
            resolve(None, None),
            Err(CredentialsError::NotConfigured)
        ));
    }
}
