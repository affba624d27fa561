//! `PerformFilterCreation`: stores a filter under the user's next ID.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformFilterCreation;
use crate::actors::userapi::storage::filters;
use crate::actors::userapi::UserApiError;

pub async fn handle(deps: &Deps, msg: PerformFilterCreation) -> Result<String, UserApiError> {
    // Two concurrent uploads of one user may pick the same next ID; the primary key refuses
    // the second, which then takes the following one.
    let mut attempt = 0;
    loop {
        match filters::insert(&deps.db, &msg.localpart, &msg.filter).await {
            Ok(id) => return Ok(id.to_string()),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "filter ID conflict, retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
}
