//! An in-memory cache of access-token lookups, the hot path of every authenticated request.
//!
//! Only the userapi changes tokens, so it can keep the cache exact: every change of a user's
//! devices or tokens forgets that user's entries after it commits. A lookup that read the
//! database before such a change must not re-insert what it read, so each change bumps an
//! epoch, and a lookup inserts only if the epoch it started in is still current (checked
//! under the same lock).

use super::messages::TokenOwner;
use std::collections::HashMap;
use std::sync::Mutex;

/// Above this many entries the cache starts over (a bound, not an LRU).
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct TokenCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    epoch: u64,
    /// Token hash -> owner and expiry (ms since the epoch; `None`: never).
    entries: HashMap<String, (TokenOwner, Option<i64>)>,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch to pass to [`TokenCache::insert`] after reading the database.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    pub fn get(&self, token_hash: &str) -> Option<(TokenOwner, Option<i64>)> {
        self.lock().entries.get(token_hash).cloned()
    }

    /// Caches a lookup read in `epoch`, unless a change happened since.
    pub fn insert(&self, epoch: u64, token_hash: String, owner: TokenOwner, expires: Option<i64>) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner.entries.insert(token_hash, (owner, expires));
    }

    /// Forgets every token of a user; call it after the change committed.
    pub fn forget_user(&self, localpart: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner
            .entries
            .retain(|_, (owner, _)| owner.localpart != localpart);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(localpart: &str) -> TokenOwner {
        TokenOwner {
            user_id: format!("@{localpart}:x"),
            localpart: localpart.into(),
            device_id: "D".into(),
            is_guest: false,
        }
    }

    #[test]
    fn changes_forget_and_block_stale_inserts() {
        let c = TokenCache::default();
        let e = c.epoch();
        c.insert(e, "a".into(), owner("alice"), None);
        c.insert(e, "b".into(), owner("bob"), Some(5));
        assert!(c.get("a").is_some());
        // A lookup began, then alice's tokens changed: its stale result is dropped.
        let before = c.epoch();
        c.forget_user("alice");
        assert!(c.get("a").is_none());
        assert_eq!(c.get("b").unwrap().1, Some(5), "other users are kept");
        c.insert(before, "a".into(), owner("alice"), None);
        assert!(c.get("a").is_none());
        c.insert(c.epoch(), "a2".into(), owner("alice"), None);
        assert!(c.get("a2").is_some());
    }
}
