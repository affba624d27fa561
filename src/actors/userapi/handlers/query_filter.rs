//! `QueryFilter`: a stored filter.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::QueryFilter;
use crate::actors::userapi::storage::filters;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: QueryFilter) -> Result<Option<String>, UserApiError> {
    // Filter IDs are decimal numbers; anything else names no filter.
    match msg.filter_id.parse::<i64>() {
        Ok(id) if msg.filter_id == id.to_string() => {
            Ok(filters::select(&deps.db, &msg.localpart, id).await?)
        }
        _ => Ok(None),
    }
}
