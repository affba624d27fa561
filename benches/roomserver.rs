//! Roomserver benchmarks against a real actor on both database backends.
//!
//! - `events_one_room`: messages persisted into ONE public v12 room (sender joined), sent
//!   one after another through `Handle::Local(addr).send(PerformRoomEvent)`: each send
//!   builds, signs, authorizes and stores an event in one transaction. `_x32_concurrent`
//!   sends 32 at a time into that room (its room actor serializes them).
//! - `events_many_rooms_x32`: one message into each of 32 rooms at once (rooms progress in
//!   parallel).
//! - `state_snapshot_10k_members`: `state::derive` of a snapshot of 10,000 members plus a
//!   few other entries with one NEW member each iteration (always from the same base), i.e.
//!   what storing a join into a room that size costs in state storage. The block layout is
//!   printed once, to show that a new state event does not copy the whole state.
//!
//! PostgreSQL benches use a fresh database `myelin_bench_<pid>` (dropped at the end) on
//! `MYELIN_TEST_POSTGRES` or `postgres://postgres@127.0.0.1:5432/postgres`; when that server
//! is unreachable they are skipped with a message.
//!
//! Run: `cargo bench --bench roomserver`.

mod common;
use actix::SystemRunner;
use common::PgDatabase;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use futures_util::future::join_all;
use myelin::actors::bridge::Handle;
use myelin::actors::roomserver::messages::PerformRoomEvent;
use myelin::actors::roomserver::state::{self, StateEntries};
use myelin::actors::roomserver::{self, input, RoomserverHandle};
use myelin::bus::Bus;
use myelin::signing_key::SigningKey;
use myelin::storage::{self, Conn, Db};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVER_NAME: &str = "bench.local";
const SENDER: &str = "@alice:bench.local";
/// Messages in flight at once in the concurrent benches (and rooms in the many-rooms bench).
const CONCURRENT: usize = 32;
/// Members of the room state in the snapshot bench.
const MEMBERS: i64 = 10_000;

/// A running roomserver, one room for the one-room benches and `CONCURRENT` more.
struct Fixture {
    handle: RoomserverHandle,
    db: Db,
    room: String,
    rooms: Vec<String>,
    _key_dir: tempfile::TempDir,
}

/// A `PerformRoomEvent` from alice. Built from JSON, so optional fields the message gains
/// (e.g. `redacts`) default to `None` and the bench keeps compiling as the API grows.
fn perform(
    room: Option<&str>,
    event_type: &str,
    state_key: Option<&str>,
    content: Value,
) -> PerformRoomEvent {
    serde_json::from_value(json!({
        "room_id": room,
        "sender": SENDER,
        "event_type": event_type,
        "state_key": state_key,
        "content": content,
    }))
    .expect("a PerformRoomEvent")
}

fn ev(room: &str, event_type: &str, state_key: Option<&str>, content: Value) -> PerformRoomEvent {
    perform(Some(room), event_type, state_key, content)
}

/// Creates a public v12 room with alice (its creator) joined. `n` makes the create event
/// unique: two identical creates in the same millisecond would have the same event ID, hence
/// (v12) the same room ID, and the second would be refused.
async fn public_room(handle: &RoomserverHandle, n: usize) -> String {
    let room = handle
        .send(perform(
            None,
            "m.room.create",
            Some(""),
            json!({ "bench.room": n }),
        ))
        .await
        .expect("create room")
        .room_id;
    for (event_type, state_key, content) in [
        ("m.room.member", SENDER, json!({ "membership": "join" })),
        // v12: the creator is privileged by the create event and may not be listed.
        ("m.room.power_levels", "", json!({ "users": {} })),
        ("m.room.join_rules", "", json!({ "join_rule": "public" })),
    ] {
        handle
            .send(ev(&room, event_type, Some(state_key), content))
            .await
            .unwrap_or_else(|e| panic!("{event_type} in {room}: {e:?}"));
    }
    room
}

async fn fixture(db: Db) -> Fixture {
    storage::migrate(&db).await.expect("migrate");
    let key_dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(SigningKey::load_or_generate(key_dir.path()).expect("signing key"));
    let addr = roomserver::start(
        input::Deps {
            db: db.clone(),
            bus: Bus::new(),
            key,
            server_name: SERVER_NAME.try_into().expect("server name"),
            default_room_version: "12".into(),
            keyring: Default::default(),
        },
        &myelin::actors::executors::Executors::start(2),
    );
    let handle = Handle::Local(addr);
    let room = public_room(&handle, 0).await;
    let rooms = join_all((1..=CONCURRENT).map(|n| public_room(&handle, n))).await;
    Fixture {
        handle,
        db,
        room,
        rooms,
        _key_dir: key_dir,
    }
}

async fn message(handle: &RoomserverHandle, room: &str) {
    handle
        .send(ev(
            room,
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": "hello from criterion" }),
        ))
        .await
        .unwrap_or_else(|e| panic!("message into {room}: {e:?}"));
}

fn bench_events(group: &mut BenchmarkGroup<'_, WallTime>, system: &SystemRunner, f: &Fixture) {
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(1));
    group.bench_function("events_one_room", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    message(&f.handle, &f.room).await;
                }
                start.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(format!("events_one_room_x{CONCURRENT}_concurrent"), |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    join_all((0..CONCURRENT).map(|_| message(&f.handle, &f.room))).await;
                }
                start.elapsed()
            })
        })
    });

    group.bench_function(format!("events_many_rooms_x{CONCURRENT}"), |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    join_all(f.rooms.iter().map(|room| message(&f.handle, room))).await;
                }
                start.elapsed()
            })
        })
    });
}

/// The (bucket, block_nid) list of a snapshot, as stored.
async fn block_list(db: &Db, snapshot: i64) -> Vec<(i64, i64)> {
    let row = db
        .query_opt(
            "SELECT blocks FROM roomserver_state_snapshots WHERE snapshot_nid = $1",
            &[&snapshot],
        )
        .await
        .expect("read snapshot")
        .expect("snapshot stored");
    serde_json::from_str(&row.string(0).expect("blocks text")).expect("block list JSON")
}

/// The stored entries text of a block.
async fn block_text(db: &Db, block: i64) -> String {
    db.query_opt(
        "SELECT entries FROM roomserver_state_blocks WHERE block_nid = $1",
        &[&block],
    )
    .await
    .expect("read block")
    .expect("block stored")
    .string(0)
    .expect("entries text")
}

/// Prints the layout of the base snapshot and what one new member writes.
async fn report_layout(db: &Db, backend: &str, room_nid: i64, base: i64, member_type: i64) {
    let blocks = block_list(db, base).await;
    let mut entries = 0usize;
    let mut bytes = 0usize;
    for (_, block) in &blocks {
        let text = block_text(db, *block).await;
        entries += serde_json::from_str::<Vec<Value>>(&text)
            .expect("block JSON")
            .len();
        bytes += text.len();
    }
    let list_bytes = serde_json::to_string(&blocks).expect("list JSON").len();
    // One new member, derived from the base (a key no iteration of the bench uses).
    let derived = state::derive(db, room_nid, Some(base), &[((member_type, -1), -1)])
        .await
        .expect("derive");
    let new_blocks: Vec<(i64, i64)> = block_list(db, derived)
        .await
        .into_iter()
        .filter(|b| !blocks.contains(b))
        .collect();
    let mut new_entries = 0usize;
    let mut new_bytes = 0usize;
    for (_, block) in &new_blocks {
        let text = block_text(db, *block).await;
        new_entries += serde_json::from_str::<Vec<Value>>(&text)
            .expect("block JSON")
            .len();
        new_bytes += text.len();
    }
    println!(
        "roomserver/{backend}/state layout: {entries} entries in {} blocks \
         (avg {:.1} entries, {} bytes per block; block list {} pairs, {list_bytes} bytes); \
         one new member writes {} block(s) of {new_entries} entries ({new_bytes} bytes) \
         + a list of {list_bytes} bytes, not the whole state ({bytes} bytes)",
        blocks.len(),
        entries as f64 / blocks.len() as f64,
        bytes / blocks.len(),
        blocks.len(),
        new_blocks.len(),
    );
}

fn bench_state(
    group: &mut BenchmarkGroup<'_, WallTime>,
    system: &SystemRunner,
    backend: &str,
    db: &Db,
) {
    // Numbers nothing else in the database uses: this state is not a real room's.
    const ROOM_NID: i64 = 1_000_000;
    const MEMBER_TYPE: i64 = 3;
    let base = system.block_on(async {
        let mut entries: StateEntries = (0..MEMBERS)
            .map(|m| ((MEMBER_TYPE, m), 100_000 + m))
            .collect();
        // create, power levels, join rules, history visibility.
        for (t, e) in [(1, 1), (2, 2), (4, 4), (5, 5)] {
            entries.insert((t, 0), e);
        }
        let base = state::store(db, ROOM_NID, &entries)
            .await
            .expect("store the base state");
        report_layout(db, backend, ROOM_NID, base, MEMBER_TYPE).await;
        base
    });

    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Auto)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    let mut next_member = MEMBERS;
    group.bench_function(format!("state_snapshot_{}k_members", MEMBERS / 1000), |b| {
        b.iter_custom(|iters| {
            let first = next_member;
            next_member += iters as i64;
            system.block_on(async {
                let start = Instant::now();
                for member in first..first + iters as i64 {
                    state::derive(
                        db,
                        ROOM_NID,
                        Some(base),
                        &[((MEMBER_TYPE, member), 100_000 + member)],
                    )
                    .await
                    .expect("derive");
                }
                start.elapsed()
            })
        })
    });
}

fn bench_backend(c: &mut Criterion, system: &SystemRunner, backend: &str, db: Db) {
    let f = system.block_on(fixture(db));
    let mut group = c.benchmark_group(format!("roomserver/{backend}"));
    bench_events(&mut group, system, &f);
    bench_state(&mut group, system, backend, &f.db);
    group.finish();
    // Stop the actors before the next backend starts.
    drop(f);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let system = actix::System::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("bench.db").display());
    let db = system.block_on(Db::connect(&url, 8)).expect("open sqlite");
    bench_backend(&mut c, &system, "sqlite", db);

    match system.block_on(PgDatabase::create()) {
        Ok((guard, url)) => {
            let db = system
                .block_on(Db::connect(&url, 8))
                .expect("connect to the bench database");
            bench_backend(&mut c, &system, "postgres", db);
            drop(guard);
        }
        Err(e) => {
            eprintln!("PostgreSQL unreachable ({e}): skipping the roomserver/postgres benches")
        }
    }

    c.final_summary();
}
