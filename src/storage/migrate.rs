//! The schema migration runner: applies `sql/NNN_*.sql` in order, once each, and records what
//! it applied (with a checksum, so an edited, already-applied file is refused, not skipped).
//!
//! Two nodes of a split deployment may start together: on PostgreSQL the whole run holds an
//! advisory lock; on SQLite it is one exclusive transaction.
//!
//! The files are written in the common subset of both dialects; the two spellings that
//! differ are rewritten for SQLite here: `BYTEA` (SQLite's `BLOB`) and `BIGSERIAL PRIMARY KEY`
//! (SQLite's `INTEGER PRIMARY KEY AUTOINCREMENT`; both hand out IDs with `RETURNING`).

use super::{Db, StorageError};
use sha2::{Digest, Sha256};

/// Every schema file, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "001_userapi_accounts",
        include_str!("../../sql/001_userapi_accounts.sql"),
    ),
    (
        2,
        "002_userapi_devices",
        include_str!("../../sql/002_userapi_devices.sql"),
    ),
    (
        3,
        "003_userapi_profiles",
        include_str!("../../sql/003_userapi_profiles.sql"),
    ),
    (
        4,
        "004_userapi_account_data",
        include_str!("../../sql/004_userapi_account_data.sql"),
    ),
    (
        5,
        "005_userapi_filters",
        include_str!("../../sql/005_userapi_filters.sql"),
    ),
    (6, "006_bus", include_str!("../../sql/006_bus.sql")),
    (
        7,
        "007_roomserver",
        include_str!("../../sql/007_roomserver.sql"),
    ),
    (
        8,
        "008_roomserver_transactions",
        include_str!("../../sql/008_roomserver_transactions.sql"),
    ),
    (
        9,
        "009_roomserver_memberships",
        include_str!("../../sql/009_roomserver_memberships.sql"),
    ),
    (
        10,
        "010_roomserver_directory",
        include_str!("../../sql/010_roomserver_directory.sql"),
    ),
    (
        11,
        "011_roomserver_reports_and_times",
        include_str!("../../sql/011_roomserver_reports_and_times.sql"),
    ),
    (12, "012_syncapi", include_str!("../../sql/012_syncapi.sql")),
    (
        13,
        "013_roomserver_transactions_by_request",
        include_str!("../../sql/013_roomserver_transactions_by_request.sql"),
    ),
    (
        14,
        "014_userapi_refresh_grace",
        include_str!("../../sql/014_userapi_refresh_grace.sql"),
    ),
    (
        15,
        "015_roomserver_state_after",
        include_str!("../../sql/015_roomserver_state_after.sql"),
    ),
    (
        16,
        "016_syncapi_streams",
        include_str!("../../sql/016_syncapi_streams.sql"),
    ),
    (
        17,
        "017_userapi_openid_tokens",
        include_str!("../../sql/017_userapi_openid_tokens.sql"),
    ),
    (
        18,
        "018_userapi_erased",
        include_str!("../../sql/018_userapi_erased.sql"),
    ),
    (
        19,
        "019_syncapi_erased_users",
        include_str!("../../sql/019_syncapi_erased_users.sql"),
    ),
    (
        20,
        "020_roomserver_soft_failed",
        include_str!("../../sql/020_roomserver_soft_failed.sql"),
    ),
    (
        21,
        "021_syncapi_forgotten",
        include_str!("../../sql/021_syncapi_forgotten.sql"),
    ),
    (
        22,
        "022_roomserver_retention",
        include_str!("../../sql/022_roomserver_retention.sql"),
    ),
    (
        23,
        "023_roomserver_pending_redactions",
        include_str!("../../sql/023_roomserver_pending_redactions.sql"),
    ),
    (
        24,
        "024_federationapi_server_keys",
        include_str!("../../sql/024_federationapi_server_keys.sql"),
    ),
    (
        25,
        "025_roomserver_outliers",
        include_str!("../../sql/025_roomserver_outliers.sql"),
    ),
    (
        26,
        "026_roomserver_remote_invites",
        include_str!("../../sql/026_roomserver_remote_invites.sql"),
    ),
    (
        27,
        "027_federationapi_received_transactions",
        include_str!("../../sql/027_federationapi_received_transactions.sql"),
    ),
    (
        28,
        "028_federationapi_queues",
        include_str!("../../sql/028_federationapi_queues.sql"),
    ),
    (
        29,
        "029_roomserver_remote_knocks",
        include_str!("../../sql/029_roomserver_remote_knocks.sql"),
    ),
    (
        30,
        "030_roomserver_backfill",
        include_str!("../../sql/030_roomserver_backfill.sql"),
    ),
    (
        33,
        "033_federationapi_queue_catch_up",
        include_str!("../../sql/033_federationapi_queue_catch_up.sql"),
    ),
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Any constant works as long as every myelin node uses the same one.
const ADVISORY_LOCK_KEY: i64 = 0x6d79_656c_696e; // "myelin"

fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn for_sqlite(sql: &str) -> String {
    sql.replace("BYTEA", "BLOB")
        .replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT")
}

/// Applies every migration not yet applied. Safe to call from several nodes at once.
pub async fn migrate(db: &Db) -> Result<(), StorageError> {
    match db {
        Db::Postgres(pg) => {
            let conn = pg.raw().await?;
            conn.batch_execute(&format!("SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})"))
                .await?;
            let result = async {
                conn.batch_execute(CREATE_TABLE).await?;
                for (version, name, sql) in MIGRATIONS {
                    let applied = conn
                        .query_opt(
                            "SELECT checksum FROM schema_migrations WHERE version = $1",
                            &[version],
                        )
                        .await?;
                    match applied {
                        Some(row) => verify(*version, name, sql, &row.get::<_, String>(0))?,
                        None => {
                            let batch = format!(
                                "BEGIN;\n{sql}\n;INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ({version}, '{name}', '{}', {});\nCOMMIT;",
                                checksum(sql),
                                super::now_ms()
                            );
                            if let Err(e) = conn.batch_execute(&batch).await {
                                let _ = conn.batch_execute("ROLLBACK").await;
                                return Err(StorageError::Migration(format!("{name}: {e}")));
                            }
                            tracing::info!(migration = name, "applied");
                        }
                    }
                }
                Ok(())
            }
            .await;
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})"))
                .await?;
            result
        }
        Db::Sqlite(lite) => {
            lite.batch(CREATE_TABLE.to_owned()).await?;
            let mut batch = String::from("BEGIN EXCLUSIVE;\n");
            let applied = db_checksums(db).await?;
            let mut pending = Vec::new();
            for (version, name, sql) in MIGRATIONS {
                match applied.iter().find(|(v, _)| v == version) {
                    Some((_, sum)) => verify(*version, name, sql, sum)?,
                    None => {
                        batch.push_str(&for_sqlite(sql));
                        batch.push_str(&format!(
                            "\n;INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ({version}, '{name}', '{}', {});\n",
                            checksum(sql),
                            super::now_ms()
                        ));
                        pending.push(*name);
                    }
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            batch.push_str("COMMIT;");
            // Another process may have applied the same files between our read and our
            // exclusive lock: then the INSERT's primary key stops the batch and we re-check.
            match lite.batch(batch).await {
                Ok(()) => {
                    for name in pending {
                        tracing::info!(migration = name, "applied");
                    }
                    Ok(())
                }
                Err(e) => {
                    let _ = lite.batch("ROLLBACK".into()).await;
                    let now = db_checksums(db).await?;
                    if MIGRATIONS
                        .iter()
                        .all(|(v, _, _)| now.iter().any(|(a, _)| a == v))
                    {
                        Ok(())
                    } else {
                        Err(StorageError::Migration(e.to_string()))
                    }
                }
            }
        }
    }
}

async fn db_checksums(db: &Db) -> Result<Vec<(i64, String)>, StorageError> {
    use super::Conn;
    db.query("SELECT version, checksum FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.string(1)?)))
        .collect()
}

fn verify(version: i64, name: &str, sql: &str, recorded: &str) -> Result<(), StorageError> {
    if recorded == checksum(sql) {
        Ok(())
    } else {
        Err(StorageError::Migration(format!(
            "{name} (version {version}) was changed after it was applied; add a new file instead"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::Conn;
    use super::*;

    #[tokio::test]
    async fn migrations_apply_once_and_record_checksums() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            // test_db migrated already; a second and a concurrent third run change nothing.
            let (a, b) = tokio::join!(migrate(&t.db), migrate(&t.db));
            a.unwrap();
            b.unwrap();
            let rows =
                t.db.query(
                    "SELECT version, checksum FROM schema_migrations ORDER BY version",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(rows.len(), MIGRATIONS.len(), "{backend}");
            for (row, (version, _, sql)) in rows.iter().zip(MIGRATIONS) {
                assert_eq!(row.i64(0).unwrap(), *version);
                assert_eq!(row.string(1).unwrap(), checksum(sql));
            }
        }
    }

    #[tokio::test]
    async fn an_edited_applied_migration_is_refused() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            t.db.execute(
                "UPDATE schema_migrations SET checksum = $1 WHERE version = 1",
                &[&"0000"],
            )
            .await
            .unwrap();
            let err = migrate(&t.db).await.unwrap_err();
            assert!(
                err.to_string().contains("changed after it was applied"),
                "{backend}: {err}"
            );
        }
    }
}
