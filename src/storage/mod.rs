//! The `Db` layer: one small API over PostgreSQL (tokio-postgres + deadpool-postgres) and the
//! embedded SQLite (rusqlite), so that every statement is written once.
//!
//! Statements use PostgreSQL's `$1, $2, ...` placeholders; the SQLite backend rewrites them to
//! `?1, ?2, ...` (same numbering, so a parameter may appear twice). Values cross the layer as
//! [`Value`] (NULL, 64-bit integer, text, bytes): schemas use `BIGINT`, `TEXT` and `BYTEA`
//! only, and booleans are stored as 0/1 integers, so the same row decodes the same on both.
//!
//! A component's storage functions take `&impl Conn`, which is either the pool itself
//! (autocommit, one statement) or a [`Txn`] (all-or-nothing).

mod migrate;
mod postgres;
pub use postgres::set_thread_shard;
mod sqlite;

pub use migrate::{migrate, MIGRATIONS};

use std::fmt;

/// A failure below the component: the driver, the pool, or a row that does not decode.
/// Not a Matrix error and not serializable; components wrap it in their own error type.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    /// Every connection stayed in use for the pool's whole wait (`database.pool_timeout_ms`).
    #[error("database busy: no connection free within {0} ms")]
    Busy(u64),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("decoding column {column}: {reason}")]
    Decode { column: usize, reason: String },
    #[error("database configuration: {0}")]
    Config(String),
    #[error("migration {0}")]
    Migration(String),
    #[error("blocking task failed: {0}")]
    Join(String),
}

/// How long a request waits for a free connection by default (`database.pool_timeout_ms`).
pub const DEFAULT_POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A value crossing the Db layer, in either direction.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Anything that can be bound as a statement parameter.
pub trait ToValue: Sync {
    fn to_value(&self) -> Value;
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for &str {
    fn to_value(&self) -> Value {
        Value::Text((*self).to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// One result row, decoded from either backend.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    fn at(&self, column: usize) -> Result<&Value, StorageError> {
        self.0.get(column).ok_or_else(|| StorageError::Decode {
            column,
            reason: "no such column".into(),
        })
    }

    fn wrong(column: usize, want: &str, got: &Value) -> StorageError {
        StorageError::Decode {
            column,
            reason: format!("expected {want}, found {got:?}"),
        }
    }

    /// A non-NULL integer column.
    pub fn i64(&self, column: usize) -> Result<i64, StorageError> {
        match self.at(column)? {
            Value::Int(v) => Ok(*v),
            other => Err(Self::wrong(column, "integer", other)),
        }
    }

    /// A nullable integer column.
    pub fn opt_i64(&self, column: usize) -> Result<Option<i64>, StorageError> {
        match self.at(column)? {
            Value::Null => Ok(None),
            _ => self.i64(column).map(Some),
        }
    }

    /// A 0/1 integer column read as a flag.
    pub fn bool(&self, column: usize) -> Result<bool, StorageError> {
        Ok(self.i64(column)? != 0)
    }

    /// A non-NULL text column.
    pub fn string(&self, column: usize) -> Result<String, StorageError> {
        match self.at(column)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(Self::wrong(column, "text", other)),
        }
    }

    /// A nullable text column.
    pub fn opt_string(&self, column: usize) -> Result<Option<String>, StorageError> {
        match self.at(column)? {
            Value::Null => Ok(None),
            _ => self.string(column).map(Some),
        }
    }

    /// A non-NULL bytes column.
    pub fn bytes(&self, column: usize) -> Result<Vec<u8>, StorageError> {
        match self.at(column)? {
            Value::Bytes(v) => Ok(v.clone()),
            other => Err(Self::wrong(column, "bytes", other)),
        }
    }
}

/// Something statements run on: the pool (autocommit) or a transaction.
#[allow(async_fn_in_trait)]
pub trait Conn {
    /// Runs a statement and returns every row.
    async fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, StorageError>;

    /// Runs a statement and returns the number of rows it changed.
    async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, StorageError>;

    /// Runs a statement expected to return at most one row.
    async fn query_opt(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Option<Row>, StorageError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }
}

/// Which backend a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        })
    }
}

/// A database handle: cheap to clone, shared by every actor of a node.
#[derive(Clone)]
pub enum Db {
    Postgres(postgres::PgDb),
    Sqlite(sqlite::SqliteDb),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Db({})", self.backend())
    }
}

impl Db {
    /// Opens `sqlite:PATH` or a `postgres://` URL, with at most `pool_size` connections.
    /// Does not migrate: call [`migrate`] once after connecting.
    /// Opens a pool of `pool_size` connections; a request waits at most
    /// [`DEFAULT_POOL_WAIT`] for a free one.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Db, StorageError> {
        Db::connect_with(url, pool_size, DEFAULT_POOL_WAIT).await
    }

    /// Opens a pool of `pool_size` connections. When all are in use a request waits for one
    /// at most `wait`, then fails with [`StorageError::Busy`]: a saturated database sheds load
    /// instead of queueing requests without limit.
    pub async fn connect_with(
        url: &str,
        pool_size: usize,
        wait: std::time::Duration,
    ) -> Result<Db, StorageError> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            Ok(Db::Sqlite(
                sqlite::SqliteDb::open(path, pool_size, wait).await?,
            ))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Db::Postgres(
                postgres::PgDb::connect(url, pool_size, wait).await?,
            ))
        } else {
            Err(StorageError::Config(format!(
                "unsupported database URL {url:?}: use sqlite:PATH or postgres://..."
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Starts a transaction. Dropping it without [`Txn::commit`] rolls it back.
    pub async fn begin(&self) -> Result<Txn, StorageError> {
        Ok(match self {
            Db::Postgres(db) => Txn::Postgres(db.begin().await?),
            Db::Sqlite(db) => Txn::Sqlite(db.begin().await?),
        })
    }

    /// Starts a transaction whose commit does not wait for the disk. Atomicity and isolation
    /// are those of any transaction; only durability is given up: an OS crash or power loss
    /// (not a process crash) may lose the last such commits. For derived data only, that is
    /// written together with the offset it was derived up to (bus consumers), so what is
    /// lost is derived again.
    pub async fn begin_relaxed(&self) -> Result<Txn, StorageError> {
        Ok(match self {
            Db::Postgres(db) => Txn::Postgres(db.begin_relaxed().await?),
            Db::Sqlite(db) => Txn::Sqlite(db.begin_relaxed().await?),
        })
    }

    /// Idle and in-use connection counts, for the metrics.
    /// PostgreSQL: one pool per actor thread (see `postgres`), `total` connections split
    /// among `threads`. SQLite connections are not bound to a thread: nothing to do.
    pub fn shard(&self, threads: usize, total: usize) {
        if let Db::Postgres(db) = self {
            db.shard(threads, total);
        }
    }

    pub fn pool_status(&self) -> (usize, usize) {
        match self {
            Db::Postgres(db) => db.pool_status(),
            Db::Sqlite(db) => db.pool_status(),
        }
    }
}

impl Conn for Db {
    async fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, StorageError> {
        match self {
            Db::Postgres(db) => db.query(sql, params).await,
            Db::Sqlite(db) => db.query(sql, params).await,
        }
    }

    async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, StorageError> {
        match self {
            Db::Postgres(db) => db.execute(sql, params).await,
            Db::Sqlite(db) => db.execute(sql, params).await,
        }
    }
}

/// An open transaction on either backend.
pub enum Txn {
    Postgres(postgres::PgTxn),
    Sqlite(sqlite::SqliteTxn),
}

impl Txn {
    /// Makes every statement of the transaction durable, or none of them.
    pub async fn commit(self) -> Result<(), StorageError> {
        match self {
            Txn::Postgres(t) => t.commit().await,
            Txn::Sqlite(t) => t.commit().await,
        }
    }
}

impl Conn for Txn {
    async fn query(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, StorageError> {
        match self {
            Txn::Postgres(t) => t.query(sql, params).await,
            Txn::Sqlite(t) => t.query(sql, params).await,
        }
    }

    async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, StorageError> {
        match self {
            Txn::Postgres(t) => t.execute(sql, params).await,
            Txn::Sqlite(t) => t.execute(sql, params).await,
        }
    }
}

fn values(params: &[&dyn ToValue]) -> Vec<Value> {
    params.iter().map(|p| p.to_value()).collect()
}

/// The most IDs one `IN (...)` statement binds. Fixed chunk sizes also keep the number of
/// distinct prepared statements small (a full chunk, and one per shorter tail length).
pub const IN_CHUNK: usize = 512;

/// `($1, $2, ..., $n)`, for statements over a list of IDs.
pub fn placeholders(n: usize) -> String {
    let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

/// Runs `sql` once per chunk of `ids`: `{ids}` in it becomes the chunk's `IN` list, bound after
/// `first` (which takes `$1..$k`, the same for every chunk). Rows of all chunks, in chunk order.
pub async fn query_chunked(
    db: &impl Conn,
    sql: &str,
    first: &[&dyn ToValue],
    ids: &[String],
) -> Result<Vec<Row>, StorageError> {
    let k = first.len();
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK - k) {
        let list: Vec<String> = (k + 1..=k + chunk.len()).map(|i| format!("${i}")).collect();
        let sql = sql.replace("{ids}", &format!("({})", list.join(", ")));
        let mut params: Vec<&dyn ToValue> = first.to_vec();
        params.extend(chunk.iter().map(|id| id as &dyn ToValue));
        out.extend(db.query(&sql, &params).await?);
    }
    Ok(out)
}

/// Milliseconds since the Unix epoch, the timestamp unit of every table.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Throwaway databases for table tests: every test runs against both backends.
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The PostgreSQL server the tests use (`MYELIN_TEST_POSTGRES`, default the local one).
    pub fn postgres_admin_url() -> String {
        std::env::var("MYELIN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// A fresh, migrated database of the given backend. The guard drops it.
    pub struct TestDb {
        pub db: Db,
        /// Where it is, for a second pool on the same database.
        pub url: String,
        _dir: Option<tempfile::TempDir>,
        pg_name: Option<String>,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Some(name) = self.pg_name.take() {
                // Best effort: a leftover test database is harmless and named as such.
                let url = postgres_admin_url();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async {
                            if let Ok((c, conn)) =
                                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                            {
                                tokio::spawn(conn);
                                let _ = c
                                    .batch_execute(&format!(
                                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                    ))
                                    .await;
                            }
                        });
                    }
                })
                .join()
                .ok();
            }
        }
    }

    static COUNTER: AtomicU32 = AtomicU32::new(0);

    pub async fn test_db(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite:{}", dir.path().join("test.db").display());
                let db = Db::connect(&url, 4).await.expect("open sqlite");
                migrate(&db).await.expect("migrate sqlite");
                TestDb {
                    db,
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!(
                    "myelin_unit_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst)
                );
                let admin = postgres_admin_url();
                let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL must be running for the tests");
                tokio::spawn(conn);
                c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .expect("drop");
                c.batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                let url = format!("{base}/{name}");
                let db = Db::connect(&url, 4).await.expect("connect");
                migrate(&db).await.expect("migrate postgres");
                TestDb {
                    db,
                    url,
                    _dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[tokio::test]
    async fn each_thread_shard_has_its_own_connections() {
        // SQLite connections are not bound to threads: sharding changes nothing there.
        let t = test_db(Backend::Postgres).await;
        let wait = std::time::Duration::from_millis(200);
        let db = Db::connect_with(&t.url, 1, wait).await.expect("pool");
        db.shard(1, 2);
        // The default pool's one connection is taken...
        let in_default = db.begin().await.expect("default pool");
        // ...yet a thread with a shard gets its own.
        set_thread_shard(1);
        let in_shard = db.begin().await;
        set_thread_shard(0);
        let in_shard = in_shard.expect("a connection of the shard");
        in_shard.query("SELECT 1", &[]).await.expect("statement");
        assert!(matches!(db.begin().await, Err(StorageError::Busy(_))));
        drop(in_shard);
        drop(in_default);
    }

    #[tokio::test]
    async fn a_saturated_pool_fails_after_its_wait_instead_of_queueing() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let wait = std::time::Duration::from_millis(150);
            let db = Db::connect_with(&t.url, 1, wait)
                .await
                .expect("second pool");
            let held = db.begin().await.expect("the one connection");
            let started = std::time::Instant::now();
            let refused = db.query("SELECT 1", &[]).await;
            assert!(
                matches!(refused, Err(StorageError::Busy(150))),
                "{backend:?}: {refused:?}"
            );
            assert!(
                started.elapsed() >= wait,
                "{backend:?}: waited its time first"
            );
            drop(held);
            // Free again: served at once.
            db.query("SELECT 1", &[]).await.expect("after release");
        }
    }

    #[tokio::test]
    async fn values_round_trip_on_both_backends() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            db.execute(
                "CREATE TABLE t_values (i BIGINT, s TEXT, b BYTEA, n TEXT)",
                &[],
            )
            .await
            .unwrap();
            let bytes = vec![0u8, 1, 255];
            db.execute(
                "INSERT INTO t_values (i, s, b, n) VALUES ($1, $2, $3, $4)",
                &[&42i64, &"héllo", &bytes, &None::<String>],
            )
            .await
            .unwrap();
            // Placeholders out of order and repeated must bind by number on both backends.
            let row = db
                .query_opt(
                    "SELECT i, s, b, n FROM t_values WHERE s = $2 AND i = $1 AND i = $1",
                    &[&42i64, &"héllo"],
                )
                .await
                .unwrap()
                .expect("row");
            assert_eq!(row.i64(0).unwrap(), 42, "{backend}");
            assert_eq!(row.string(1).unwrap(), "héllo", "{backend}");
            assert_eq!(row.bytes(2).unwrap(), bytes, "{backend}");
            assert_eq!(row.opt_string(3).unwrap(), None, "{backend}");
            assert!(
                row.string(0).is_err(),
                "{backend}: type mismatch is an error"
            );
        }
    }

    #[tokio::test]
    async fn transactions_commit_or_roll_back() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            db.execute("CREATE TABLE t_txn (k TEXT PRIMARY KEY)", &[])
                .await
                .unwrap();
            {
                let txn = db.begin().await.unwrap();
                txn.execute("INSERT INTO t_txn (k) VALUES ($1)", &[&"dropped"])
                    .await
                    .unwrap();
                // Dropped without commit: rolled back.
            }
            let txn = db.begin().await.unwrap();
            txn.execute("INSERT INTO t_txn (k) VALUES ($1)", &[&"kept"])
                .await
                .unwrap();
            txn.commit().await.unwrap();
            let rows = db
                .query("SELECT k FROM t_txn ORDER BY k", &[])
                .await
                .unwrap();
            let keys: Vec<String> = rows.iter().map(|r| r.string(0).unwrap()).collect();
            assert_eq!(keys, vec!["kept".to_string()], "{backend}");
        }
    }
}
