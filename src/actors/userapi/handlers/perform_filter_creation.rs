//! `PerformFilterCreation`: stores a filter under the user's next ID.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformFilterCreation;
use crate::actors::userapi::storage::filters;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformFilterCreation) -> Result<String, UserApiError> {
    // Two concurrent uploads of one user may pick the same next ID; the second finds it
    // taken (no row) and takes the following one. Any other failure is no conflict and is
    // not retried.
    for attempt in 1..=5 {
        if let Some(id) = filters::insert(&deps.db, &msg.localpart, &msg.filter).await? {
            return Ok(id.to_string());
        }
        tracing::debug!(attempt, "filter ID taken by a concurrent upload, retrying");
    }
    Err(UserApiError::internal("no free filter ID after 5 attempts"))
}
