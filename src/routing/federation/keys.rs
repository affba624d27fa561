//! Server keys: ours (`/_matrix/key/v2/server`) and, as a notary, other servers'
//! (`/_matrix/key/v2/query`). Served without signatures, as the spec says.

use crate::actors::federationapi::messages::{KeyQuery, QueryLocalServerKeys, QueryNotaryKeys};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::federation::discovery::{
    get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
};
use ruma::serde::Raw;
use serde_json::Value;
use std::collections::BTreeMap;

/// Values as ruma's raw key objects, as they are (signatures must survive byte for byte).
fn raw<T>(value: &Value) -> Result<Raw<T>, MatrixError> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| MatrixError::internal(e))
}

/// # `GET /_matrix/key/v2/server`
///
/// Our key object: the current key, old keys, `valid_until_ts`, self-signed.
pub async fn get_server_keys(
    state: web::Data<AppState>,
    _req: Ruma<get_server_keys::v2::Request>,
) -> RumaResult<get_server_keys::v2::Response> {
    let keys = state.federationapi.send(QueryLocalServerKeys {}).await?;
    Ok(RumaResponse(get_server_keys::v2::Response::new(raw(
        &keys,
    )?)))
}

/// # `GET /_matrix/key/v2/server/{keyId}`
///
/// The deprecated form with a key ID, which the spec says to ignore: the same answer.
pub async fn get_server_keys_by_id(
    state: web::Data<AppState>,
) -> Result<HttpResponse, MatrixError> {
    let keys = state.federationapi.send(QueryLocalServerKeys {}).await?;
    Ok(HttpResponse::Ok().json(keys))
}

/// # `GET /_matrix/key/v2/query/{serverName}`
///
/// As a notary: the server's key objects (fetched if the cache is not valid until
/// `minimum_valid_until_ts`, default now), each signed by us too; `[]` when none can be had.
pub async fn get_remote_server_keys(
    state: web::Data<AppState>,
    req: Ruma<get_remote_server_keys::v2::Request>,
) -> RumaResult<get_remote_server_keys::v2::Response> {
    let query = KeyQuery {
        key_ids: Vec::new(),
        minimum_valid_until_ts: millis(req.body.minimum_valid_until_ts),
    };
    let servers = BTreeMap::from([(req.body.server_name.clone(), query)]);
    let keys = notary(&state, servers).await?;
    Ok(RumaResponse(get_remote_server_keys::v2::Response::new(
        keys,
    )))
}

/// # `POST /_matrix/key/v2/query`
///
/// As a notary, for several servers at once (at most 100). A server's minimum validity is
/// the latest its key IDs ask for (now when they name none).
pub async fn get_remote_server_keys_batch(
    state: web::Data<AppState>,
    req: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> RumaResult<get_remote_server_keys_batch::v2::Response> {
    let now = crate::storage::now_ms();
    let servers = req
        .body
        .server_keys
        .iter()
        .map(|(server, criteria)| {
            let minimum_valid_until_ts = criteria
                .values()
                .map(|c| c.minimum_valid_until_ts.map_or(now, millis))
                .max()
                .unwrap_or(now);
            let query = KeyQuery {
                key_ids: criteria.keys().cloned().collect(),
                minimum_valid_until_ts,
            };
            (server.clone(), query)
        })
        .collect();
    let keys = notary(&state, servers).await?;
    Ok(RumaResponse(
        get_remote_server_keys_batch::v2::Response::new(keys),
    ))
}

fn millis(t: ruma::MilliSecondsSinceUnixEpoch) -> i64 {
    i64::from(t.get())
}

/// Asks the federationapi as a notary.
async fn notary<T>(
    state: &AppState,
    servers: BTreeMap<ruma::OwnedServerName, KeyQuery>,
) -> Result<Vec<Raw<T>>, MatrixError> {
    let keys = state
        .federationapi
        .send(QueryNotaryKeys { servers })
        .await?;
    keys.iter().map(raw).collect()
}
