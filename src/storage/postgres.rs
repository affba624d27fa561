//! PostgreSQL backend: deadpool pools of tokio-postgres clients, statements prepared once per
//! connection and cached.
//!
//! A tokio-postgres connection is a task on the executor of the thread that opened it, and
//! every statement crosses to that task and back. So that a statement never hops threads,
//! each of the node's actor threads has a pool of its own ([`set_thread_shard`], called by
//! `actors::executors`; `PgDb::shard` splits `database.pool_size` among them), opened and used
//! only there; other threads (start-up, the listeners) share the default pool. Measured on the
//! send path with 2 threads: one shared pool lost a third of the throughput to hops.

use super::{values, Row, StorageError, ToValue, Value};
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

#[derive(Clone)]
pub struct PgDb {
    /// For threads without a shard of their own.
    pool: Pool,
    sharding: std::sync::Arc<Sharding>,
}

struct Sharding {
    /// Per actor thread, once `shard` was called: opened lazily on the thread that uses it.
    shards: std::sync::OnceLock<Shards>,
    config: tokio_postgres::Config,
    wait: std::time::Duration,
}

struct Shards {
    pools: Vec<std::sync::OnceLock<Pool>>,
    size: usize,
}

thread_local! {
    /// This thread's shard (1-based; 0: none, use the default pool).
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Gives the calling thread shard `index` (1-based) of every sharded pool.
pub fn set_thread_shard(index: usize) {
    SHARD.with(|s| s.set(index));
}

fn build_pool(
    config: &tokio_postgres::Config,
    size: usize,
    wait: std::time::Duration,
) -> Result<Pool, StorageError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(wait))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StorageError::Pool(e.to_string()))
}

impl PgDb {
    pub async fn connect(
        url: &str,
        pool_size: usize,
        wait: std::time::Duration,
    ) -> Result<PgDb, StorageError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StorageError::Config(format!("bad PostgreSQL URL: {e}")))?;
        let pool = build_pool(&config, pool_size, wait)?;
        let db = PgDb {
            pool,
            sharding: std::sync::Arc::new(Sharding {
                shards: Default::default(),
                config,
                wait,
            }),
        };
        // Fail at start, not at the first request, when the server is unreachable.
        drop(db.conn().await?);
        Ok(db)
    }

    /// Splits `total` connections among `threads` per-thread pools (at least 2 each); call
    /// once, before the threads call [`set_thread_shard`]. Later calls change nothing.
    pub fn shard(&self, threads: usize, total: usize) {
        let threads = threads.max(1);
        let _ = self.sharding.shards.set(Shards {
            pools: (0..threads).map(|_| std::sync::OnceLock::new()).collect(),
            size: total.div_ceil(threads).max(2),
        });
    }

    /// The calling thread's pool.
    fn pool(&self) -> Result<&Pool, StorageError> {
        let index = SHARD.with(|s| s.get());
        match (index, self.sharding.shards.get()) {
            (1.., Some(shards)) => {
                let slot = &shards.pools[(index - 1) % shards.pools.len()];
                if let Some(pool) = slot.get() {
                    return Ok(pool);
                }
                let pool = build_pool(&self.sharding.config, shards.size, self.sharding.wait)?;
                Ok(slot.get_or_init(|| pool))
            }
            _ => Ok(&self.pool),
        }
    }

    async fn conn(&self) -> Result<Object, StorageError> {
        let pool = self.pool()?;
        pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Timeout(_) => {
                StorageError::Busy(self.sharding.wait.as_millis() as u64)
            }
            e => StorageError::Pool(e.to_string()),
        })
    }

    pub fn pool_status(&self) -> (usize, usize) {
        let mut statuses = vec![self.pool.status()];
        if let Some(shards) = self.sharding.shards.get() {
            statuses.extend(
                shards
                    .pools
                    .iter()
                    .filter_map(|p| p.get())
                    .map(|p| p.status()),
            );
        }
        statuses.iter().fold((0, 0), |(idle, busy), s| {
            (
                idle + s.available,
                busy + s.size.saturating_sub(s.available),
            )
        })
    }

    pub async fn begin(&self) -> Result<PgTxn, StorageError> {
        let conn = self.conn().await?;
        conn.batch_execute("BEGIN").await?;
        Ok(PgTxn { conn: Some(conn) })
    }

    /// A transaction whose commit does not wait for the WAL flush (see `Db::begin_relaxed`).
    pub async fn begin_relaxed(&self) -> Result<PgTxn, StorageError> {
        let conn = self.conn().await?;
        conn.batch_execute("BEGIN; SET LOCAL synchronous_commit TO OFF")
            .await?;
        Ok(PgTxn { conn: Some(conn) })
    }

    /// A dedicated connection for the migration runner (advisory lock, DDL batches).
    pub(super) async fn raw(&self) -> Result<Object, StorageError> {
        self.conn().await
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Vec<Row>, StorageError> {
        query(&*self.conn().await?, sql, params).await
    }

    pub async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, StorageError> {
        execute(&*self.conn().await?, sql, params).await
    }
}

pub struct PgTxn {
    conn: Option<Object>,
}

impl PgTxn {
    fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.conn.as_ref().expect("transaction used after commit")
    }

    pub async fn commit(mut self) -> Result<(), StorageError> {
        let conn = self.conn.take().expect("committed twice");
        conn.batch_execute("COMMIT").await?;
        Ok(())
    }

    pub async fn query(
        &self,
        sql: &str,
        params: &[&dyn ToValue],
    ) -> Result<Vec<Row>, StorageError> {
        query(self.client(), sql, params).await
    }

    pub async fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, StorageError> {
        execute(self.client(), sql, params).await
    }
}

impl Drop for PgTxn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            match tokio::runtime::Handle::try_current() {
                // The connection goes back to the pool only after the rollback ran.
                Ok(rt) => {
                    rt.spawn(async move {
                        if let Err(e) = conn.batch_execute("ROLLBACK").await {
                            tracing::warn!(error = %e, "rollback failed; connection discarded");
                            let _ = Object::take(conn);
                        }
                    });
                }
                // No runtime to roll back on: discard the connection; the server rolls back.
                Err(_) => drop(Object::take(conn)),
            }
        }
    }
}

async fn query(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    params: &[&dyn ToValue],
) -> Result<Vec<Row>, StorageError> {
    let stmt = client.prepare_cached(sql).await?;
    let vals = values(params);
    let refs: Vec<&(dyn ToSql + Sync)> = vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&stmt, &refs).await?;
    rows.iter().map(decode_row).collect()
}

async fn execute(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    params: &[&dyn ToValue],
) -> Result<u64, StorageError> {
    let stmt = client.prepare_cached(sql).await?;
    let vals = values(params);
    let refs: Vec<&(dyn ToSql + Sync)> = vals.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    Ok(client.execute(&stmt, &refs).await?)
}

fn decode_row(row: &tokio_postgres::Row) -> Result<Row, StorageError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes)
        } else if *ty == Type::TEXT
            || *ty == Type::VARCHAR
            || *ty == Type::NAME
            || *ty == Type::BPCHAR
        {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(StorageError::Decode {
                column: i,
                reason: format!("unsupported column type {ty}"),
            });
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
