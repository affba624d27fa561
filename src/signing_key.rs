//! The server's ed25519 signing key: generated on first start into `<data_dir>/signing.key` and
//! reused after. Events, federation requests and key responses are signed with it.
//!
//! # File format
//! One line, the same as Synapse's `*.signing.key`, so a key can move between the two:
//! `ed25519 <version> <seed>`, where `<version>` is the key ID's `[A-Za-z0-9_]` part (the key ID
//! is `ed25519:<version>`) and `<seed>` is the 32-byte private seed in base64 (standard alphabet;
//! written unpadded, read padded or not).
//!
//! The file is written once: to a temporary file in the same directory, synced, then hard-linked
//! into place, which fails if the key already exists. So a crash never leaves a half-written key,
//! and two servers starting on one fresh data dir end up with the same key. A file that exists
//! but does not parse is an error; it is never replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::RngCore;
use ruma::serde::{base64::Standard, Base64};
use ruma::signatures::{Ed25519KeyPair, PublicKeyMap};
use ruma::{OwnedServerSigningKeyId, ServerName};

/// The file name of the key inside the data dir.
pub const FILE_NAME: &str = "signing.key";

/// The fixed PKCS#8 v1 prefix (RFC 8410) in front of a raw ed25519 seed.
const PKCS8_SEED_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const VERSION_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// Reading or writing the key file (or its directory) failed.
    #[error("signing key {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The key file exists but is not a valid key; it is left alone for the operator to fix.
    #[error("signing key {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The operating system's random number generator failed.
    #[error("cannot generate a signing key: {0}")]
    Random(#[from] rand::Error),
}

/// The server's ed25519 key pair and its key ID (`ed25519:<version>`).
pub struct SigningKey {
    key_pair: Ed25519KeyPair,
    key_id: OwnedServerSigningKeyId,
}

impl std::fmt::Debug for SigningKey {
    /// Shows the key ID and the public key, never the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key_base64())
            .finish()
    }
}

impl SigningKey {
    /// Reads `<data_dir>/signing.key`, or generates the key and writes it there on first start.
    pub fn load_or_generate(data_dir: &Path) -> Result<SigningKey, SigningKeyError> {
        let path = data_dir.join(FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => return Self::parse(&text).map_err(|reason| corrupt(&path, reason)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(SigningKeyError::Io { path, source }),
        }
        let mut random = [0u8; 36];
        OsRng.try_fill_bytes(&mut random)?;
        let (seed, version) = random.split_at(32);
        let version: String = version
            .iter()
            .map(|b| char::from(VERSION_CHARS[usize::from(*b) % VERSION_CHARS.len()]))
            .collect();
        let line = format!(
            "ed25519 a_{version} {}\n",
            Base64::<Standard, _>::new(seed).encode()
        );
        publish(
            data_dir,
            &path,
            &format!("{version}.{}", std::process::id()),
            &line,
        )?;
        // Read back what is on disk: another process may have published its key first.
        let text = fs::read_to_string(&path).map_err(|source| io_err(&path, source))?;
        Self::parse(&text).map_err(|reason| corrupt(&path, reason))
    }

    /// Parses one `ed25519 <version> <seed>` line.
    fn parse(text: &str) -> Result<SigningKey, String> {
        let [algorithm, version, seed] = text.split_whitespace().collect::<Vec<_>>()[..] else {
            return Err("expected one line `ed25519 <version> <base64 seed>`".to_owned());
        };
        if algorithm != "ed25519" {
            return Err(format!("unsupported algorithm `{algorithm}`"));
        }
        let key_id = OwnedServerSigningKeyId::try_from(format!("ed25519:{version}"))
            .map_err(|e| format!("invalid key version `{version}`: {e}"))?;
        let seed = Base64::<Standard, Vec<u8>>::parse(seed)
            .map_err(|e| format!("seed is not base64: {e}"))?;
        if seed.as_bytes().len() != 32 {
            return Err(format!("seed is {} bytes, not 32", seed.as_bytes().len()));
        }
        let der = [&PKCS8_SEED_PREFIX[..], seed.as_bytes()].concat();
        let key_pair = Ed25519KeyPair::from_der(&der, version.to_owned())
            .map_err(|e| format!("invalid ed25519 seed: {e}"))?;
        Ok(SigningKey { key_pair, key_id })
    }

    /// A fixed key (seed `[7; 32]`, version `a_test`) for tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> SigningKey {
        let seed = Base64::<Standard, _>::new([7u8; 32]).encode();
        Self::parse(&format!("ed25519 a_test {seed}")).unwrap()
    }

    /// The key ID, `ed25519:<version>`: where our signatures and published keys are filed.
    pub fn key_id(&self) -> &OwnedServerSigningKeyId {
        &self.key_id
    }

    /// The public key as the spec publishes it: unpadded standard base64 (43 characters).
    pub fn public_key_base64(&self) -> String {
        Base64::<Standard, _>::new(self.key_pair.public_key()).encode()
    }

    /// The key pair, for ruma's `hash_and_sign_event` and `sign_json`.
    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    /// A key map holding only this key under `server_name`, to verify our own signatures.
    pub fn public_key_map(&self, server_name: &ServerName) -> PublicKeyMap {
        let key = Base64::new(self.key_pair.public_key().to_vec());
        PublicKeyMap::from([(
            server_name.to_string(),
            [(self.key_id.to_string(), key)].into(),
        )])
    }
}

/// Writes `line` to a temporary file next to `path` (named with the unique `tag`), syncs it, and
/// links it to `path` unless `path` already exists. The temporary file is removed either way.
fn publish(dir: &Path, path: &Path, tag: &str, line: &str) -> Result<(), SigningKeyError> {
    fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
    let tmp = dir.join(format!(".{FILE_NAME}.{tag}.tmp"));
    let written = write_synced(&tmp, line).and_then(|()| match fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        linked => linked,
    });
    let removed = fs::remove_file(&tmp);
    written.map_err(|source| io_err(path, source))?;
    removed.map_err(|source| io_err(&tmp, source))?;
    // Make the new directory entry durable too (directories cannot be opened on Windows).
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_err(dir, source))?;
    Ok(())
}

/// Creates the new file `path` (mode 0600 on Unix) holding `text`, and syncs it to disk.
fn write_synced(path: &Path, text: &str) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn io_err(path: &Path, source: io::Error) -> SigningKeyError {
    SigningKeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn corrupt(path: &Path, reason: String) -> SigningKeyError {
    SigningKeyError::Corrupt {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKey::load_or_generate(dir.path()).unwrap();
        let second = SigningKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64().len(), 43);
        let version = first.key_id().key_name().as_str().to_owned();
        assert!(version.starts_with("a_") && version.len() == 6, "{version}");
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.starts_with(&format!("ed25519 {version} ")), "{text}");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(dir.path().join(FILE_NAME)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn concurrent_first_starts_agree() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("fresh");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SigningKey::load_or_generate(&data_dir).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().public_key_base64())
                .collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    }

    #[test]
    fn loads_a_synapse_key() {
        // The seed [7; 32]; public key checked against Python's `cryptography`.
        let dir = tempfile::tempdir().unwrap();
        let seed = Base64::<Standard, _>::new([7u8; 32]).encode();
        fs::write(dir.path().join(FILE_NAME), format!("ed25519 a_1 {seed}\n")).unwrap();
        let key = SigningKey::load_or_generate(dir.path()).unwrap();
        assert_eq!(key.key_id().as_str(), "ed25519:a_1");
        let public = "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw";
        assert_eq!(key.public_key_base64(), public);
        let map = key.public_key_map(ruma::server_name!("example.org"));
        assert_eq!(map["example.org"]["ed25519:a_1"].encode(), public);
    }

    #[test]
    fn corrupt_files_are_errors_and_left_alone() {
        let seed = Base64::<Standard, _>::new([7u8; 32]).encode();
        let short = Base64::<Standard, _>::new([7u8; 31]).encode();
        let cases = [
            ("", "expected one line"),
            ("ed25519 a_1", "expected one line"),
            (&format!("rsa a_1 {seed}") as &str, "unsupported algorithm"),
            (&format!("ed25519 a-1 {seed}"), "invalid key version"),
            ("ed25519 a_1 !!!", "not base64"),
            (&format!("ed25519 a_1 {short}"), "31 bytes"),
        ];
        for (text, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(FILE_NAME);
            fs::write(&path, text).unwrap();
            let err = SigningKey::load_or_generate(dir.path()).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, SigningKeyError::Corrupt { .. }),
                "{text:?}: {err}"
            );
            assert!(message.contains(expected), "{text:?}: {message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }
}
