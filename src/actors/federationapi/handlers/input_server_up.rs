//! `InputServerUp`: a server whose signed request verified is up, so our queue for it stops
//! backing off.

use super::super::actor::Deps;
use super::super::messages::InputServerUp;
use super::super::FederationApiError;

pub async fn handle(deps: &Deps, msg: InputServerUp) -> Result<(), FederationApiError> {
    let origin = msg.server_name.as_str();
    if origin == deps.server_name.as_str() || !deps.queues.is_backing_off(origin) {
        return Ok(());
    }
    deps.queues.reachable(origin).await?;
    Ok(())
}
