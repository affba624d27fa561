//! Password hashing and verification with argon2id on a `SyncArbiter`: each hash costs tens
//! of milliseconds of CPU, so it runs on threads of its own and a burst of logins never
//! stalls the async executor that serves every other request.

use actix::prelude::*;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

pub struct PasswordHasher {
    argon2: Argon2<'static>,
}

impl PasswordHasher {
    /// Starts `threads` hasher threads with the given argon2id cost.
    pub fn start(
        threads: usize,
        memory_kib: u32,
        iterations: u32,
    ) -> Result<Addr<PasswordHasher>, String> {
        let params = Params::new(memory_kib, iterations, 1, None).map_err(|e| e.to_string())?;
        Ok(SyncArbiter::start(threads.max(1), move || PasswordHasher {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
        }))
    }
}

impl Actor for PasswordHasher {
    type Context = SyncContext<Self>;
}

/// Hashes a password into a PHC string (algorithm, parameters and salt included).
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct HashPassword(pub String);

/// Checks a password against a PHC string. Hashes made with other parameters verify too.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct VerifyPassword {
    pub hash: String,
    pub password: String,
}

impl Handler<HashPassword> for PasswordHasher {
    type Result = Result<String, String>;

    fn handle(&mut self, msg: HashPassword, _: &mut SyncContext<Self>) -> Self::Result {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2
            .hash_password(msg.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    }
}

impl Handler<VerifyPassword> for PasswordHasher {
    type Result = bool;

    fn handle(&mut self, msg: VerifyPassword, _: &mut SyncContext<Self>) -> bool {
        PasswordHash::new(&msg.hash)
            .map(|h| {
                self.argon2
                    .verify_password(msg.password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    }
}
