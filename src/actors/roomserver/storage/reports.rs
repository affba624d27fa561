//! `roomserver_reports`: reports of rooms and events, for moderators.

use crate::storage::{Conn, StorageError};

const INSERT: &str =
    "INSERT INTO roomserver_reports (room_id, event_id, reporter, reason, received_ts)
    VALUES ($1, $2, $3, $4, $5) RETURNING report_id";

/// Records a report and returns its ID.
pub async fn insert(
    db: &impl Conn,
    room_id: &str,
    event_id: Option<&str>,
    reporter: &str,
    reason: Option<&str>,
) -> Result<i64, StorageError> {
    db.query_opt(
        INSERT,
        &[
            &room_id,
            &event_id,
            &reporter,
            &reason,
            &crate::storage::now_ms(),
        ],
    )
    .await?
    .ok_or_else(|| StorageError::Decode {
        column: 0,
        reason: "INSERT ... RETURNING returned no row".into(),
    })?
    .i64(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;
    use crate::storage::Conn;

    #[tokio::test]
    async fn reports_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let a = insert(db, "!r:x", Some("$e"), "@u:x", Some("spam"))
                .await
                .unwrap();
            let b = insert(db, "!r:x", None, "@v:x", None).await.unwrap();
            assert!(b > a, "{backend}");
            let rows = db
                .query("SELECT room_id, event_id, reporter, reason FROM roomserver_reports ORDER BY report_id", &[])
                .await
                .unwrap();
            let all: Vec<(String, Option<String>, String, Option<String>)> = rows
                .iter()
                .map(|r| {
                    (
                        r.string(0).unwrap(),
                        r.opt_string(1).unwrap(),
                        r.string(2).unwrap(),
                        r.opt_string(3).unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                all,
                vec![
                    (
                        "!r:x".into(),
                        Some("$e".into()),
                        "@u:x".into(),
                        Some("spam".into())
                    ),
                    ("!r:x".into(), None, "@v:x".into(), None),
                ]
            );
        }
    }
}
