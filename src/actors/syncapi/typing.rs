//! Typing notifications: in memory only (they matter for seconds), with a position per
//! change. Positions start at the clock's milliseconds when the node starts, so a token from
//! before a restart is never ahead of the new positions for long.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct RoomTyping {
    /// User → (expiry in ms since the epoch, the change that set it).
    users: HashMap<String, (i64, i64)>,
    /// The position of the room's last change.
    position: i64,
}

/// Who is typing where.
pub struct Typing {
    inner: Mutex<(i64, HashMap<String, RoomTyping>)>,
}

impl Typing {
    /// Starts at `position` (the clock's milliseconds when the node starts).
    pub fn new(position: i64) -> Typing {
        Typing {
            inner: Mutex::new((position, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (i64, HashMap<String, RoomTyping>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest position.
    pub fn position(&self) -> i64 {
        self.lock().0
    }

    /// Marks `user` typing until `until_ms`, or (`None`) not typing. Returns the change's
    /// generation (for [`Typing::expire`]) and whether watchers must hear of it (a refresh
    /// of someone already typing, or stopping when not typing, changes nothing they see).
    pub fn set(&self, room: &str, user: &str, until_ms: Option<i64>) -> (i64, bool) {
        let mut guard = self.lock();
        let (next, rooms) = &mut *guard;
        let r = rooms.entry(room.to_owned()).or_default();
        *next += 1;
        let changed = match until_ms {
            Some(until) => r.users.insert(user.to_owned(), (until, *next)).is_none(),
            None => r.users.remove(user).is_some(),
        };
        if changed {
            r.position = *next;
        }
        (*next, changed)
    }

    /// Ends `user`'s typing set by change `generation`, unless a newer change replaced it.
    /// Returns the new position when something changed.
    pub fn expire(&self, room: &str, user: &str, generation: i64) -> Option<i64> {
        let mut guard = self.lock();
        let (next, rooms) = &mut *guard;
        let r = rooms.get_mut(room)?;
        match r.users.get(user) {
            Some((_, g)) if *g == generation => {
                r.users.remove(user);
                *next += 1;
                r.position = *next;
                Some(*next)
            }
            _ => None,
        }
    }

    /// The users typing in `room`, when it changed after `since` (or always, for `None`).
    pub fn since(&self, room: &str, since: Option<i64>) -> Option<Vec<String>> {
        let guard = self.lock();
        let r = guard.1.get(room)?;
        if since.is_some_and(|s| r.position <= s) {
            return None;
        }
        let now = crate::storage::now_ms();
        let mut users: Vec<String> = r
            .users
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(u, _)| u.clone())
            .collect();
        users.sort();
        if since.is_none() && users.is_empty() {
            return None;
        }
        Some(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_changes_move_the_position_and_expire_by_generation() {
        let t = Typing::new(1000);
        let far = crate::storage::now_ms() + 60_000;
        let (g1, changed) = t.set("!r", "@a", Some(far));
        assert!(changed);
        assert_eq!(t.since("!r", Some(1000)), Some(vec!["@a".to_owned()]));
        assert_eq!(t.since("!r", Some(g1)), None);
        // A refresh replaces the generation; the old timer does nothing.
        let (g2, changed) = t.set("!r", "@a", Some(far));
        assert!(!changed);
        assert!(t.expire("!r", "@a", g1).is_none());
        let p = t.expire("!r", "@a", g2).unwrap();
        assert_eq!(t.since("!r", Some(g2)), Some(vec![]));
        assert_eq!(t.position(), p);
        assert!(!t.set("!r", "@a", None).1, "not typing any more");
        assert_eq!(t.since("!other", None), None);
    }
}
