//! Userapi benchmarks against a real actor on both database backends.
//!
//! - `login`: a password login as the client API does it: `QueryPasswordCheck` (argon2id
//!   verify on the hasher threads) then `PerformDeviceCreation`, with the server's default
//!   argon2 cost; once alone and as a burst of concurrent logins (throughput with every
//!   hasher thread busy).
//! - `access_token`: `QueryAccessToken` for a valid and for an unknown token, the hot path of
//!   every authenticated request.
//!
//! Every message goes through `Handle::Local(addr).send`, as callers send it. PostgreSQL
//! benches use a fresh database `myelin_bench_<pid>` (dropped at the end) on
//! `MYELIN_TEST_POSTGRES` or `postgres://postgres@127.0.0.1:5432/postgres`; when that server
//! is unreachable they are skipped with a message.
//!
//! Run: `cargo bench --bench userapi`.

mod common;
use actix::SystemRunner;
use common::PgDatabase;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use futures_util::future::join_all;
use myelin::actors::bridge::Handle;
use myelin::actors::userapi::messages::{
    PasswordCheck, PerformAccountCreation, PerformDeviceCreation, QueryAccessToken,
    QueryPasswordCheck, TokenLookup,
};
use myelin::actors::userapi::{self, UserApiConfig, UserApiHandle};
use myelin::storage::{self, Db};
use std::time::{Duration, Instant};

const LOCALPART: &str = "bench";
const PASSWORD: &str = "correct horse battery staple";
/// Concurrent logins in the burst bench.
const BURST: usize = 16;

/// The server's default userapi settings (argon2id: 19456 KiB, 2 iterations, 2 threads).
fn userapi_config() -> UserApiConfig {
    UserApiConfig {
        server_name: "bench.local".into(),
        access_token_lifetime_ms: 300_000,
        hasher_threads: 2,
        argon2_memory_kib: 19456,
        argon2_iterations: 2,
    }
}

/// A running userapi with one account and one live session.
struct Fixture {
    handle: UserApiHandle,
    access_token: String,
}

async fn fixture(db: Db) -> Fixture {
    storage::migrate(&db).await.expect("migrate");
    let addr = userapi::start(
        db,
        myelin::bus::Bus::new(),
        &userapi_config(),
        &myelin::actors::executors::Executors::start(2),
    )
    .await
    .expect("start userapi");
    let handle = Handle::Local(addr);
    handle
        .send(PerformAccountCreation {
            localpart: LOCALPART.into(),
            password: Some(PASSWORD.into()),
            is_guest: false,
            display_name: None,
        })
        .await
        .expect("create account");
    let access_token = login(&handle).await;
    Fixture {
        handle,
        access_token,
    }
}

/// A password login as `POST /login` does it; returns the new access token.
async fn login(handle: &UserApiHandle) -> String {
    let check = handle
        .send(QueryPasswordCheck {
            localpart: LOCALPART.into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("password check");
    let PasswordCheck::Valid {
        password_fingerprint,
        ..
    } = check
    else {
        panic!("login refused: {check:?}");
    };
    handle
        .send(PerformDeviceCreation {
            localpart: LOCALPART.into(),
            device_id: None,
            display_name: Some("criterion".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: Some("criterion".into()),
            refresh_token: false,
            password_fingerprint: Some(password_fingerprint),
        })
        .await
        .expect("device creation")
        .access_token
}

async fn lookup(handle: &UserApiHandle, token: &str, valid: bool) {
    let found = handle
        .send(QueryAccessToken {
            access_token: token.into(),
        })
        .await
        .expect("token lookup");
    assert_eq!(
        matches!(found, TokenLookup::Valid(_)),
        valid,
        "unexpected lookup result {found:?}"
    );
}

fn bench_login(group: &mut BenchmarkGroup<'_, WallTime>, system: &SystemRunner, f: &Fixture) {
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));

    group.throughput(Throughput::Elements(1));
    group.bench_function("login", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    login(&f.handle).await;
                }
                start.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function(format!("login_x{BURST}_concurrent"), |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    join_all((0..BURST).map(|_| login(&f.handle))).await;
                }
                start.elapsed()
            })
        })
    });
}

fn bench_access_token(
    group: &mut BenchmarkGroup<'_, WallTime>,
    system: &SystemRunner,
    f: &Fixture,
) {
    group
        .sample_size(20)
        .sampling_mode(SamplingMode::Auto)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (name, token, valid) in [
        ("access_token_valid", f.access_token.as_str(), true),
        (
            "access_token_unknown",
            "syt_not_a_token_that_was_ever_issued",
            false,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        lookup(&f.handle, token, valid).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
}

fn bench_backend(c: &mut Criterion, system: &SystemRunner, backend: &str, db: Db) {
    let f = system.block_on(fixture(db));
    let mut group = c.benchmark_group(format!("userapi/{backend}"));
    // Token lookups first, then logins: logins add a device each, so the lookups would
    // otherwise see a table whose size depends on how many logins criterion chose to run.
    bench_access_token(&mut group, system, &f);
    bench_login(&mut group, system, &f);
    group.finish();
    // Stop the actor (and its hasher threads) before the next backend starts.
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
        Err(e) => eprintln!("PostgreSQL unreachable ({e}): skipping the userapi/postgres benches"),
    }

    c.final_summary();
}
