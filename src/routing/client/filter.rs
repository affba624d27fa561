//! Sync filters: upload and fetch.

use super::ensure_self;
use crate::actors::userapi::messages::{PerformFilterCreation, QueryFilter};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::filter::{create_filter, get_filter, FilterDefinition};

/// # `POST /_matrix/client/v3/user/{userId}/filter`
pub async fn create_filter(
    state: web::Data<AppState>,
    req: Ruma<create_filter::v3::Request>,
) -> RumaResult<create_filter::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "create filters")?;
    let filter = serde_json::to_string(&req.body.filter).map_err(|e| MatrixError::internal(e))?;
    let filter_id = state
        .userapi
        .send(PerformFilterCreation {
            localpart: req.sender.localpart.clone(),
            filter,
        })
        .await?;
    Ok(RumaResponse(create_filter::v3::Response::new(filter_id)))
}

/// # `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub async fn get_filter(
    state: web::Data<AppState>,
    req: Ruma<get_filter::v3::Request>,
) -> RumaResult<get_filter::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "get filters")?;
    let text = state
        .userapi
        .send(QueryFilter {
            localpart: req.sender.localpart.clone(),
            filter_id: req.body.filter_id.clone(),
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("No such filter"))?;
    let filter: FilterDefinition =
        serde_json::from_str(&text).map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(get_filter::v3::Response::new(filter)))
}
