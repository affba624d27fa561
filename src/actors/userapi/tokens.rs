//! Access and refresh tokens: random, shown to the client once, stored only as SHA-256.

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

/// A new random token with a readable prefix (`mya_` access, `myr_` refresh).
pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
    )
}

/// A new random device ID: ten upper-case letters, as Synapse makes them.
pub fn random_device_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| char::from(rng.gen_range(b'A'..=b'Z')))
        .collect()
}

/// What the database stores for a token.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
