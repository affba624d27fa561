//! `syncapi_account_data`: the syncapi's copy of account data, from the `userapi` stream.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO syncapi_account_data
    (user_id, room_id, data_type, content, position) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET
        content = EXCLUDED.content, position = EXCLUDED.position";
const SELECT_SINCE: &str = "SELECT room_id, data_type, content, position FROM syncapi_account_data
    WHERE user_id = $1 AND position > $2 AND position <= $3 ORDER BY position";
const SELECT_ONE: &str = "SELECT content FROM syncapi_account_data
    WHERE user_id = $1 AND room_id = $2 AND data_type = $3";

/// One piece of account data; `room_id` is empty for global data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountData {
    pub room_id: String,
    pub data_type: String,
    pub content: String,
    pub position: i64,
}

/// Stores a change at its stream position.
pub async fn upsert(
    db: &impl Conn,
    user_id: &str,
    room_id: Option<&str>,
    data_type: &str,
    content: &str,
    position: i64,
) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &user_id,
            &room_id.unwrap_or(""),
            &data_type,
            &content,
            &position,
        ],
    )
    .await?;
    Ok(())
}

/// A user's account data changed in `(after, upto]`.
pub async fn select_since(
    db: &impl Conn,
    user_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<AccountData>, StorageError> {
    db.query(SELECT_SINCE, &[&user_id, &after, &upto])
        .await?
        .iter()
        .map(|r| {
            Ok(AccountData {
                room_id: r.string(0)?,
                data_type: r.string(1)?,
                content: r.string(2)?,
                position: r.i64(3)?,
            })
        })
        .collect()
}

/// One piece of account data's content.
pub async fn select_one(
    db: &impl Conn,
    user_id: &str,
    room_id: Option<&str>,
    data_type: &str,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT_ONE, &[&user_id, &room_id.unwrap_or(""), &data_type])
        .await?
        .map(|r| r.string(0))
        .transpose()
}
