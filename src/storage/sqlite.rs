//! SQLite backend (the embedded default): a small pool of rusqlite connections on one file in
//! WAL mode. rusqlite is synchronous. What may wait or write a file (taking the write lock,
//! every COMMIT with its WAL write, fsync and any WAL checkpoint, autocommit writes,
//! migrations) runs on tokio's blocking pool, so the async executor never waits on a lock or
//! the disk. Statements that cannot wait run in place: reads (WAL readers never wait for the
//! writer) and statements inside a transaction that already holds the write lock, which only
//! change pages in memory (`cache_spill = OFF` keeps them there until COMMIT). They take
//! microseconds, less than the two thread hand-offs a trip through the blocking pool costs.
//! A request waits for a free connection at most the pool's wait, then gets
//! `StorageError::Busy`.

use super::{values, Row, StorageError, ToValue, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Shared = Arc<Mutex<Connection>>;

#[derive(Clone)]
pub struct SqliteDb {
    inner: Arc<Pool>,
}

struct Pool {
    idle: Mutex<Vec<Shared>>,
    permits: Arc<Semaphore>,
    size: usize,
    /// The longest a request waits for a connection.
    wait: std::time::Duration,
}

/// A checked-out connection; goes back to the pool on drop.
struct Lease {
    conn: Option<Shared>,
    pool: Arc<Pool>,
    /// Held until the connection is back in `idle` (so a permit always finds one there).
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(c) = self.conn.take() else {
            return;
        };
        let pool = self.pool.clone();
        let permit = self.permit.take();
        // A future dropped while its `BEGIN` waited on the blocking pool leaves the
        // connection inside a transaction once that `BEGIN` completes: it is rolled back
        // before the connection is reused, or the write lock would stay held for good.
        let idle = c.try_lock().is_ok_and(|g| g.is_autocommit());
        if idle {
            if let Ok(mut list) = pool.idle.lock() {
                list.push(c);
            }
            return;
        }
        let release = move || {
            if let Ok(g) = c.lock() {
                if !g.is_autocommit() {
                    if let Err(e) = g.execute_batch("ROLLBACK") {
                        tracing::error!(error = %e, "sqlite rollback of an abandoned transaction failed");
                    }
                }
            }
            if let Ok(mut list) = pool.idle.lock() {
                list.push(c);
            }
            drop(permit);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(release);
            }
            Err(_) => release(),
        }
    }
}

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether SQLite refused because another connection holds the lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn open_one(path: &str) -> Result<Connection, StorageError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer. synchronous=FULL syncs the WAL at every commit,
    // so an acknowledged write survives an OS crash or power loss too, not only kill -9.
    // A 1 MiB page cache per connection (SQLite's default is 2 MiB): the working set of the
    // hot statements is small, the OS page cache holds the rest, and the pool's resident
    // memory halves.
    // cache_spill = OFF: a transaction's changed pages stay in memory until COMMIT instead of
    // being written to the WAL mid-transaction, so the statements inside a transaction (which
    // run in place, see the module docs) never write a file; COMMIT does all the writing, on
    // the blocking pool.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -1024; PRAGMA cache_spill = OFF;",
    )?;
    Ok(conn)
}

impl SqliteDb {
    pub async fn open(
        path: &str,
        pool_size: usize,
        wait: std::time::Duration,
    ) -> Result<SqliteDb, StorageError> {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StorageError::Config(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let size = pool_size.max(1);
        let path = path.to_owned();
        let conns = tokio::task::spawn_blocking(move || {
            (0..size)
                .map(|_| open_one(&path).map(|c| Arc::new(Mutex::new(c))))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| StorageError::Join(e.to_string()))??;
        Ok(SqliteDb {
            inner: Arc::new(Pool {
                idle: Mutex::new(conns),
                permits: Arc::new(Semaphore::new(size)),
                size,
                wait,
            }),
        })
    }

    async fn lease(&self) -> Result<Lease, StorageError> {
        let acquire = self.inner.permits.clone().acquire_owned();
        let permit = tokio::time::timeout(self.inner.wait, acquire)
            .await
            .map_err(|_| StorageError::Busy(self.inner.wait.as_millis() as u64))?
            .map_err(|e| StorageError::Pool(e.to_string()))?;
        let conn = self
            .inner
            .idle
            .lock()
            .map_err(|e| StorageError::Pool(e.to_string()))?
            .pop()
            .ok_or_else(|| StorageError::Pool("no idle connection behind a permit".into()))?;
        Ok(Lease {
            conn: Some(conn),
            pool: self.inner.clone(),
            permit: Some(permit),
        })
    }

    pub fn pool_status(&self) -> (usize, usize) {
        let idle = self.inner.idle.lock().map(|v| v.len()).unwrap_or(0);
        (idle, self.inner.size - idle)
    }

    pub async fn begin(&self) -> Result<SqliteTxn, StorageError> {
        self.begin_with(false).await
    }

    /// A transaction whose commit does not wait for the disk (see `Db::begin_relaxed`).
    pub async fn begin_relaxed(&self) -> Result<SqliteTxn, StorageError> {
        self.begin_with(true).await
    }

    async fn begin_with(&self, relaxed: bool) -> Result<SqliteTxn, StorageError> {
        let lease = self.lease().await?;
        // IMMEDIATE takes the write lock up front, so two transactions never deadlock
        // upgrading from read to write.
        let sql = if relaxed {
            "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE"
        } else {
            "BEGIN IMMEDIATE"
        };
        // Uncontended, taking the lock is microseconds: try in place without waiting, and
        // only when another writer holds it wait for it on the blocking pool.
        let at_once = run_in_place(&lease, |c| {
            c.busy_timeout(std::time::Duration::ZERO)?;
            let r = c.execute_batch(sql);
            c.busy_timeout(BUSY_TIMEOUT)?;
            Ok(r)
        });
        let begun = match at_once {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if is_busy(&e) => {
                run(&lease, move |c| {
                    c.execute_batch("BEGIN IMMEDIATE").map_err(Into::into)
                })
                .await
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e),
        };
        let txn = SqliteTxn {
            lease: Some(lease),
            relaxed,
        };
        // On failure the drop restores the connection.
        begun.map(|()| txn)
    }

    /// Runs a batch of statements (the migration runner's DDL).
    pub(super) async fn batch(&self, sql: String) -> Result<(), StorageError> {
        let lease = self.lease().await?;
        run(&lease, move |c| c.execute_batch(&sql).map_err(Into::into)).await
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Vec<Row>, StorageError> {
        let lease = self.lease().await?;
        // A write (UPDATE ... RETURNING) in autocommit may wait for the lock: off the executor.
        query(&lease, sql, params, is_read(sql)).await
    }

    pub async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, StorageError> {
        let lease = self.lease().await?;
        execute(&lease, sql, params, false).await
    }
}

/// Whether a statement only reads (and so never waits for a lock in WAL mode).
fn is_read(sql: &str) -> bool {
    let head = sql.trim_start();
    head.get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("select"))
}

pub struct SqliteTxn {
    lease: Option<Lease>,
    /// Began with `synchronous = NORMAL`; FULL is restored before the connection goes back.
    relaxed: bool,
}

impl SqliteTxn {
    fn lease(&self) -> &Lease {
        self.lease.as_ref().expect("transaction used after commit")
    }

    pub async fn commit(mut self) -> Result<(), StorageError> {
        let lease = self.lease.take().expect("committed twice");
        let relaxed = self.relaxed;
        let work = move |c: &mut Connection| {
            let committed = c.execute_batch("COMMIT").map_err(Into::into);
            if relaxed {
                c.execute_batch("PRAGMA synchronous = FULL")?;
            }
            committed
        };
        // Every commit writes the WAL, a full one waits for its fsync, and any may run the
        // WAL checkpoint: off the executor.
        let result = run(&lease, work).await;
        if result.is_err() {
            rollback(&lease, relaxed);
        }
        result
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Vec<Row>, StorageError> {
        // The transaction holds the write lock (BEGIN IMMEDIATE): nothing here waits.
        query(self.lease(), sql, params, true).await
    }

    pub async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, StorageError> {
        execute(self.lease(), sql, params, true).await
    }
}

fn rollback(lease: &Lease, relaxed: bool) {
    if let Some(conn) = &lease.conn {
        if let Ok(c) = conn.lock() {
            if !c.is_autocommit() {
                if let Err(e) = c.execute_batch("ROLLBACK") {
                    tracing::error!(error = %e, "sqlite rollback failed");
                }
            }
            if relaxed {
                if let Err(e) = c.execute_batch("PRAGMA synchronous = FULL") {
                    tracing::error!(error = %e, "sqlite synchronous=FULL not restored");
                }
            }
        }
    }
}

impl Drop for SqliteTxn {
    fn drop(&mut self) {
        // A rollback is a few microseconds of local work: done in place, before the
        // connection returns to the pool.
        if let Some(lease) = self.lease.take() {
            rollback(&lease, self.relaxed);
        }
    }
}

async fn run<T, F>(lease: &Lease, f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
{
    let conn = lease.conn.clone().expect("lease without connection");
    tokio::task::spawn_blocking(move || {
        let mut guard = conn
            .lock()
            .map_err(|e| StorageError::Pool(format!("poisoned connection: {e}")))?;
        f(&mut guard)
    })
    .await
    .map_err(|e| StorageError::Join(e.to_string()))?
}

/// Runs `f` on the calling thread, for statements that cannot wait (see the module docs).
fn run_in_place<T, F>(lease: &Lease, f: F) -> Result<T, StorageError>
where
    F: FnOnce(&mut Connection) -> Result<T, StorageError>,
{
    let conn = lease.conn.as_ref().expect("lease without connection");
    let mut guard = conn
        .lock()
        .map_err(|e| StorageError::Pool(format!("poisoned connection: {e}")))?;
    f(&mut guard)
}

/// Rewrites `$N` placeholders to SQLite's `?N`, leaving quoted text alone.
pub(super) fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '\'' {
            quoted = !quoted;
        }
        if ch == '$' && !quoted && chars.peek().is_some_and(|c| c.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(ch);
        }
    }
    out
}

async fn query(
    lease: &Lease,
    sql: &str,
    params: &[&dyn ToValue],
    in_place: bool,
) -> Result<Vec<Row>, StorageError> {
    let sql = translate(sql);
    let vals = values(params);
    let work = move |c: &mut Connection| {
        let mut stmt = c.prepare_cached(&sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(vals.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut vs = Vec::with_capacity(width);
            for i in 0..width {
                vs.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Int(v as i64),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                });
            }
            out.push(Row(vs));
        }
        Ok(out)
    };
    if in_place {
        run_in_place(lease, work)
    } else {
        run(lease, work).await
    }
}

async fn execute(
    lease: &Lease,
    sql: &str,
    params: &[&dyn ToValue],
    in_place: bool,
) -> Result<u64, StorageError> {
    let sql = translate(sql);
    let vals = values(params);
    let work = move |c: &mut Connection| {
        let mut stmt = c.prepare_cached(&sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(vals.iter()))? as u64)
    };
    if in_place {
        run_in_place(lease, work)
    } else {
        run(lease, work).await
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_become_numbered_question_marks() {
        assert_eq!(
            super::translate("SELECT '$1' FROM t WHERE a = $1 AND b = $12"),
            "SELECT '$1' FROM t WHERE a = ?1 AND b = ?12"
        );
    }

    /// A `BEGIN` whose caller gave up while it waited for the write lock must not keep the
    /// lock once it gets it (a request cancelled, a node stopped mid-write).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_begin_does_not_keep_the_write_lock() {
        use std::time::Duration;
        let db = crate::storage::testing::test_db(crate::storage::Backend::Sqlite).await;
        let holder = db.db.begin().await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), db.db.begin()).await;
        assert!(
            waiting.is_err(),
            "the second BEGIN should have been waiting"
        );
        holder.commit().await.unwrap();
        // The abandoned BEGIN takes the lock now (SQLite's busy handler retries within
        // 100 ms), on the blocking pool, and is rolled back.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let next = tokio::time::timeout(Duration::from_secs(5), db.db.begin())
            .await
            .expect("a new transaction is not stuck behind the abandoned one")
            .unwrap();
        next.commit().await.unwrap();
    }
}
