//! Secrets at rest in the shared database: XChaCha20-Poly1305 under the fleet key, with
//! the user name and a purpose bound as associated data, so a sealed TOTP secret copied
//! onto another user's row (or used for another purpose) does not open.
//!
//! A sealed value is `b"ts1" | key id (u32, big endian) | nonce (24 bytes) | ciphertext
//! and tag`. The header is authenticated too (it is part of the associated data). The key
//! id says which key sealed it, so keys can be rotated: a [`Keyring`] seals with its
//! current key and opens with any key it holds. Nonces are random: 192 bits make a
//! collision negligible for any number of secrets a fleet will ever seal.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;
const MAGIC: &[u8; 3] = b"ts1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + 4 + NONCE_LEN;

/// Identifies a fleet key; stored with every value it sealed.
pub type KeyId = u32;

/// What a sealed value is for: part of the associated data, so a value of one kind can
/// never be opened as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A TOTP secret.
    TotpSecret,
    /// The key check value toopherd stores to tell a wrong key from a damaged row.
    KeyCheck,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::TotpSecret => b"totp-secret",
            Purpose::KeyCheck => b"key-check",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Not a sealed value at all (too short, unknown format).
    Malformed,
    /// Sealed with a key the credentials file does not hold.
    UnknownKey { key_id: KeyId },
    /// The key id is known but the value does not open: another fleet key under the same
    /// id, a damaged value, or one moved to another user or purpose.
    DoesNotOpen { key_id: KeyId },
    /// The operating system gave no randomness for a nonce.
    Random,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Malformed => f.write_str("the stored secret is not a sealed value"),
            SealError::UnknownKey { key_id } => write!(
                f,
                "the stored secret was sealed with fleet key {key_id}, which the credentials \
                 file does not hold (keep the old key under [[previous_keys]] until \
                 `toopherctl store rotate-key` has run)"
            ),
            SealError::DoesNotOpen { key_id } => write!(
                f,
                "the stored secret does not decrypt with fleet key {key_id}: the credentials \
                 file has another key under that id, or the row was altered or copied from \
                 another user"
            ),
            SealError::Random => f.write_str("no randomness for a nonce"),
        }
    }
}

impl std::error::Error for SealError {}

/// One fleet key. The bytes are zeroized on drop and never printed.
pub struct FleetKey {
    id: KeyId,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl FleetKey {
    pub fn new(id: KeyId, bytes: Zeroizing<[u8; KEY_LEN]>) -> FleetKey {
        FleetKey { id, bytes }
    }

    /// A fresh random key.
    pub fn generate(id: KeyId) -> Result<FleetKey, SealError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut *bytes).map_err(|_| SealError::Random)?;
        Ok(FleetKey { id, bytes })
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        // The `zeroize` feature wipes the cipher's copy of the key when it is dropped.
        XChaCha20Poly1305::new(&(*self.bytes).into())
    }
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// The keys of one credentials file: the current one seals, every one opens.
#[derive(Debug)]
pub struct Keyring {
    current: FleetKey,
    previous: Vec<FleetKey>,
}

/// Two keys under one id would make a sealed value ambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKeyId(pub KeyId);

impl std::fmt::Display for DuplicateKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "two fleet keys have key id {}; each needs its own",
            self.0
        )
    }
}

impl std::error::Error for DuplicateKeyId {}

impl Keyring {
    pub fn new(current: FleetKey, previous: Vec<FleetKey>) -> Result<Keyring, DuplicateKeyId> {
        let mut ids = vec![current.id];
        for k in &previous {
            if ids.contains(&k.id) {
                return Err(DuplicateKeyId(k.id));
            }
            ids.push(k.id);
        }
        Ok(Keyring { current, previous })
    }

    pub fn current_id(&self) -> KeyId {
        self.current.id
    }

    fn key(&self, id: KeyId) -> Option<&FleetKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// Seals `secret` for `user` with the current key.
    pub fn seal(&self, purpose: Purpose, user: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = &self.current;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(HEADER_LEN + secret.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        let aad = associated_data(&out, purpose, user);
        let ciphertext = key
            .cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            // Encryption fails only for messages of gigabytes.
            .map_err(|_| SealError::Malformed)?;
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a value sealed for `user` and `purpose` by any key of the ring.
    pub fn open(
        &self,
        purpose: Purpose,
        user: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let key_id = sealed_key_id(sealed)?;
        let key = self.key(key_id).ok_or(SealError::UnknownKey { key_id })?;
        let (header, ciphertext) = sealed.split_at(HEADER_LEN);
        let nonce: [u8; NONCE_LEN] = header[MAGIC.len() + 4..]
            .try_into()
            .map_err(|_| SealError::Malformed)?;
        let aad = associated_data(header, purpose, user);
        // The tag is checked in constant time by the AEAD; the plaintext is released only
        // when it matches.
        key.cipher()
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::DoesNotOpen { key_id })
    }

    /// Whether `sealed` was sealed by another key than the current one (rotation
    /// re-seals those).
    pub fn needs_reseal(&self, sealed: &[u8]) -> Result<bool, SealError> {
        Ok(sealed_key_id(sealed)? != self.current.id)
    }
}

/// The key id of a sealed value.
pub fn sealed_key_id(sealed: &[u8]) -> Result<KeyId, SealError> {
    if sealed.len() < HEADER_LEN + TAG_LEN || !sealed.starts_with(MAGIC) {
        return Err(SealError::Malformed);
    }
    let id: [u8; 4] = sealed[MAGIC.len()..MAGIC.len() + 4]
        .try_into()
        .map_err(|_| SealError::Malformed)?;
    Ok(KeyId::from_be_bytes(id))
}

/// The header, the purpose and the user, each length-prefixed so no two different
/// (purpose, user) pairs give the same bytes.
fn associated_data(header: &[u8], purpose: Purpose, user: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 8 + purpose.tag().len() + user.len());
    aad.extend_from_slice(header);
    for part in [purpose.tag(), user.as_bytes()] {
        aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: KeyId, fill: u8) -> FleetKey {
        FleetKey::new(id, Zeroizing::new([fill; KEY_LEN]))
    }

    fn ring(id: KeyId, fill: u8) -> Keyring {
        Keyring::new(key(id, fill), vec![]).unwrap()
    }

    const SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn round_trip() {
        let r = ring(1, 7);
        let sealed = r.seal(Purpose::TotpSecret, "alice", SECRET).unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + SECRET.len() + TAG_LEN);
        assert_eq!(sealed_key_id(&sealed).unwrap(), 1);
        // The secret does not appear in the sealed bytes.
        assert!(!sealed.windows(SECRET.len()).any(|w| w == SECRET));
        assert_eq!(
            r.open(Purpose::TotpSecret, "alice", &sealed)
                .unwrap()
                .as_slice(),
            SECRET
        );
        // Random nonces: sealing twice gives different values.
        assert_ne!(
            sealed,
            r.seal(Purpose::TotpSecret, "alice", SECRET).unwrap()
        );
    }

    #[test]
    fn another_users_row_does_not_open() {
        let r = ring(1, 7);
        let sealed = r.seal(Purpose::TotpSecret, "alice", SECRET).unwrap();
        assert_eq!(
            r.open(Purpose::TotpSecret, "bob", &sealed),
            Err(SealError::DoesNotOpen { key_id: 1 })
        );
        assert_eq!(
            r.open(Purpose::KeyCheck, "alice", &sealed),
            Err(SealError::DoesNotOpen { key_id: 1 })
        );
        // Length prefixes: the purpose and user cannot be shifted into each other.
        assert!(r.open(Purpose::TotpSecret, "alice\0", &sealed).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let r = ring(1, 7);
        let sealed = r.seal(Purpose::TotpSecret, "alice", SECRET).unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                r.open(Purpose::TotpSecret, "alice", &t).is_err(),
                "flipping a bit of byte {i} went unnoticed"
            );
        }
        assert_eq!(
            r.open(Purpose::TotpSecret, "alice", &sealed[..sealed.len() - 1]),
            Err(SealError::DoesNotOpen { key_id: 1 })
        );
        assert_eq!(
            r.open(Purpose::TotpSecret, "alice", &sealed[..HEADER_LEN]),
            Err(SealError::Malformed)
        );
        assert_eq!(
            r.open(Purpose::TotpSecret, "alice", SECRET),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn unknown_key_id_is_named() {
        let sealed = ring(5, 7)
            .seal(Purpose::TotpSecret, "alice", SECRET)
            .unwrap();
        let err = ring(6, 7)
            .open(Purpose::TotpSecret, "alice", &sealed)
            .unwrap_err();
        assert_eq!(err, SealError::UnknownKey { key_id: 5 });
        assert!(err.to_string().contains("fleet key 5"), "{err}");
        // The same id with other key bytes: a wrong key, said as such.
        let err = ring(5, 8)
            .open(Purpose::TotpSecret, "alice", &sealed)
            .unwrap_err();
        assert_eq!(err, SealError::DoesNotOpen { key_id: 5 });
    }

    #[test]
    fn old_key_opens_after_rotation() {
        let old = ring(1, 7);
        let sealed = old.seal(Purpose::TotpSecret, "alice", SECRET).unwrap();
        let rotated = Keyring::new(key(2, 9), vec![key(1, 7)]).unwrap();
        assert!(rotated.needs_reseal(&sealed).unwrap());
        let opened = rotated.open(Purpose::TotpSecret, "alice", &sealed).unwrap();
        let resealed = rotated.seal(Purpose::TotpSecret, "alice", &opened).unwrap();
        assert_eq!(sealed_key_id(&resealed).unwrap(), 2);
        assert!(!rotated.needs_reseal(&resealed).unwrap());
        // After the rotation the old key can go; the new value opens without it.
        let new_only = ring(2, 9);
        assert_eq!(
            new_only
                .open(Purpose::TotpSecret, "alice", &resealed)
                .unwrap()
                .as_slice(),
            SECRET
        );
        assert_eq!(
            new_only.open(Purpose::TotpSecret, "alice", &sealed),
            Err(SealError::UnknownKey { key_id: 1 })
        );
    }

    #[test]
    fn duplicate_key_ids_are_refused() {
        assert_eq!(
            Keyring::new(key(1, 1), vec![key(2, 2), key(1, 3)]).unwrap_err(),
            DuplicateKeyId(1)
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let out = format!("{:?}", ring(3, 0xab));
        assert!(out.contains("<redacted>"), "{out}");
        assert!(
            !out.contains("171") && !out.to_lowercase().contains("abab"),
            "{out}"
        );
    }
}
