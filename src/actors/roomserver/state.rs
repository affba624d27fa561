//! Room state as snapshots built from shared, deduplicated blocks.
//!
//! A state entry maps a (type_nid, state_key_nid) pair to the event_nid that holds it. The
//! key space is split into [`BUCKETS`] buckets by a fixed hash; a block holds the entries of
//! one bucket, and a snapshot lists, per non-empty bucket, its block. A new state event
//! therefore writes one block (its bucket's, about `state size / BUCKETS` entries) and a
//! snapshot list of at most `BUCKETS` numbers, sharing every other block with the parent
//! snapshot. Blocks and snapshots are deduplicated by content hash.
//!
//! ```text
//!  snapshot 7: [(0, b12), (1, b40), (2, b13), ...]        snapshot 8 (one new member):
//!                 |         |         |                   [(0, b12), (1, b41), (2, b13), ...]
//!                b12       b40       b13   <- shared ->      b12       b41       b13
//! ```

use super::storage::{state_blocks, state_snapshots};
use crate::storage::{Conn, StorageError};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// (type_nid, state_key_nid).
pub type StateKey = (i64, i64);
/// The whole state (or part of it): state key -> event_nid.
pub type StateEntries = BTreeMap<StateKey, i64>;

/// How many buckets the state key space is split into. Part of the storage format: the
/// bucket of a key must never change once snapshots exist.
pub const BUCKETS: u64 = 256;

/// The bucket of a state key: a fixed mix of both numbers (SplitMix64's finalizer), so
/// members of one room spread over all buckets.
pub fn bucket(key: StateKey) -> i64 {
    let mut z = (key.0 as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(key.1 as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % BUCKETS) as i64
}

fn decode_err(reason: impl ToString) -> StorageError {
    StorageError::Decode {
        column: 0,
        reason: reason.to_string(),
    }
}

fn hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The (bucket, block_nid) list of a snapshot.
async fn blocks_of(db: &impl Conn, snapshot_nid: i64) -> Result<Vec<(i64, i64)>, StorageError> {
    let (_, blocks) = state_snapshots::select(db, snapshot_nid)
        .await?
        .ok_or_else(|| decode_err(format!("no state snapshot {snapshot_nid}")))?;
    serde_json::from_str(&blocks).map_err(decode_err)
}

/// The entries of the given blocks, merged.
async fn entries_of(db: &impl Conn, block_nids: &[i64]) -> Result<StateEntries, StorageError> {
    let mut out = StateEntries::new();
    for (_, text) in state_blocks::select_many(db, block_nids).await? {
        let entries: Vec<(i64, i64, i64)> = serde_json::from_str(&text).map_err(decode_err)?;
        out.extend(entries.into_iter().map(|(t, s, e)| ((t, s), e)));
    }
    Ok(out)
}

/// The whole state of a snapshot.
pub async fn load(db: &impl Conn, snapshot_nid: i64) -> Result<StateEntries, StorageError> {
    let blocks = blocks_of(db, snapshot_nid).await?;
    let nids: Vec<i64> = blocks.iter().map(|(_, b)| *b).collect();
    entries_of(db, &nids).await
}

/// Only the given keys of a snapshot (reads just their buckets' blocks): what an auth
/// check needs.
pub async fn load_keys(
    db: &impl Conn,
    snapshot_nid: i64,
    keys: &[StateKey],
) -> Result<StateEntries, StorageError> {
    let blocks = blocks_of(db, snapshot_nid).await?;
    let wanted: Vec<i64> = blocks
        .iter()
        .filter(|(b, _)| keys.iter().any(|k| bucket(*k) == *b))
        .map(|(_, n)| *n)
        .collect();
    let mut all = entries_of(db, &wanted).await?;
    all.retain(|k, _| keys.contains(k));
    Ok(all)
}

/// Stores one bucket's entries as a block (or finds the identical one).
async fn store_block(db: &impl Conn, entries: &StateEntries) -> Result<i64, StorageError> {
    let list: Vec<(i64, i64, i64)> = entries.iter().map(|((t, s), e)| (*t, *s, *e)).collect();
    let text = serde_json::to_string(&list).map_err(decode_err)?;
    state_blocks::insert(db, &hash(&text), &text).await
}

/// Stores a snapshot from its block list (or finds the identical one).
async fn store_snapshot(
    db: &impl Conn,
    room_nid: i64,
    blocks: &[(i64, i64)],
) -> Result<i64, StorageError> {
    let text = serde_json::to_string(blocks).map_err(decode_err)?;
    let key = hash(&format!("{room_nid}:{text}"));
    state_snapshots::insert(db, &key, room_nid, &text).await
}

/// Stores a whole state as a snapshot (a room's first state, or a resolved state).
pub async fn store(
    db: &impl Conn,
    room_nid: i64,
    state: &StateEntries,
) -> Result<i64, StorageError> {
    let mut buckets: BTreeMap<i64, StateEntries> = BTreeMap::new();
    for (k, e) in state {
        buckets.entry(bucket(*k)).or_default().insert(*k, *e);
    }
    let mut blocks = Vec::with_capacity(buckets.len());
    for (b, entries) in &buckets {
        blocks.push((*b, store_block(db, entries).await?));
    }
    store_snapshot(db, room_nid, &blocks).await
}

/// A snapshot equal to `parent` with `changes` applied (added or replaced entries), which
/// shares every block of the parent that the changes do not touch.
pub async fn derive(
    db: &impl Conn,
    room_nid: i64,
    parent: Option<i64>,
    changes: &[(StateKey, i64)],
) -> Result<i64, StorageError> {
    let Some(parent) = parent else {
        return store(db, room_nid, &changes.iter().copied().collect()).await;
    };
    if changes.is_empty() {
        return Ok(parent);
    }
    let mut blocks: BTreeMap<i64, i64> = blocks_of(db, parent).await?.into_iter().collect();
    let mut touched: BTreeMap<i64, Vec<(StateKey, i64)>> = BTreeMap::new();
    for (k, e) in changes {
        touched.entry(bucket(*k)).or_default().push((*k, *e));
    }
    for (b, bucket_changes) in touched {
        let mut entries = match blocks.get(&b) {
            Some(block) => entries_of(db, &[*block]).await?,
            None => StateEntries::new(),
        };
        entries.extend(bucket_changes);
        blocks.insert(b, store_block(db, &entries).await?);
    }
    let list: Vec<(i64, i64)> = blocks.into_iter().collect();
    store_snapshot(db, room_nid, &list).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[test]
    fn buckets_spread_members() {
        let mut counts = vec![0u32; BUCKETS as usize];
        for member in 0..10_000 {
            counts[bucket((3, member)) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 15 && *max < 70, "uneven buckets: {min}..{max}");
        assert_eq!(bucket((3, 17)), bucket((3, 17)));
    }

    #[tokio::test]
    async fn snapshots_share_blocks_and_deduplicate() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            // A room of 1,000 members plus create and power levels.
            let mut state: StateEntries = (0..1000).map(|m| ((3, m), 10_000 + m)).collect();
            state.insert((1, 0), 1);
            state.insert((2, 0), 2);
            let s1 = store(db, 1, &state).await.unwrap();
            assert_eq!(load(db, s1).await.unwrap(), state, "{backend}");
            assert_eq!(
                store(db, 1, &state).await.unwrap(),
                s1,
                "identical state, one snapshot"
            );

            // One new member: one block differs, every other is shared.
            let s2 = derive(db, 1, Some(s1), &[((3, 5000), 99)]).await.unwrap();
            let (b1, b2) = (
                blocks_of(db, s1).await.unwrap(),
                blocks_of(db, s2).await.unwrap(),
            );
            let differing = b2.iter().filter(|b| !b1.contains(b)).count();
            assert_eq!(
                differing, 1,
                "{backend}: only the new member's bucket is rewritten"
            );
            let mut expect = state.clone();
            expect.insert((3, 5000), 99);
            assert_eq!(load(db, s2).await.unwrap(), expect);
            // Replacing an entry; no change keeps the snapshot.
            let s3 = derive(db, 1, Some(s2), &[((2, 0), 3)]).await.unwrap();
            assert_eq!(load(db, s3).await.unwrap()[&(2, 0)], 3);
            assert_eq!(derive(db, 1, Some(s3), &[]).await.unwrap(), s3);
            // Reading a few keys only.
            let some = load_keys(db, s3, &[(1, 0), (3, 7), (9, 9)]).await.unwrap();
            assert_eq!(some, StateEntries::from([((1, 0), 1), ((3, 7), 10_007)]));
            // A first state built by derive equals one built by store.
            let fresh = derive(db, 2, None, &[((1, 0), 1)]).await.unwrap();
            assert_eq!(
                load(db, fresh).await.unwrap(),
                StateEntries::from([((1, 0), 1)])
            );
        }
    }
}
