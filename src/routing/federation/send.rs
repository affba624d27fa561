//! Transactions other servers push to this one (signed requests).

use super::auth;
use crate::actors::federationapi::messages::InputTransaction;
use crate::actors::federationapi::sender::{MAX_EDUS, MAX_PDUS};
use crate::routing::error::MatrixError;
use crate::routing::ruma::read_body;
use crate::routing::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

/// The largest transaction body read: 50 PDUs and 100 EDUs of at most 64 KiB each, and the
/// envelope (capped by `server.max_request_bytes` as well).
pub const MAX_TRANSACTION_BYTES: usize = (MAX_PDUS + MAX_EDUS) * 65_536 + 65_536;

/// # `PUT /_matrix/federation/v1/send/{txnId}`
///
/// A transaction of PDUs and EDUs from the server that signed the request. More than 50
/// PDUs or 100 EDUs is refused whole with 400, as Synapse refuses it (Synapse's body is
/// empty; ours says `M_BAD_JSON` and why). The answer maps each PDU's event ID to `{}` or
/// `{"error": ...}` (see `InputTransaction`); the same transaction ID from the same origin
/// gets the same answer again.
pub async fn send_transaction(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    txn_id: web::Path<String>,
) -> Result<HttpResponse, MatrixError> {
    let limit = state
        .config
        .server
        .max_request_bytes
        .min(MAX_TRANSACTION_BYTES);
    let body = read_body(&req, payload.into_inner(), limit).await?;
    let origin = auth::verify(&state, &req, &body).await?;
    let txn: Value = serde_json::from_slice(&body)
        .map_err(|e| MatrixError::new("M_NOT_JSON", format!("Transaction is not JSON: {e}")))?;
    let Value::Object(mut txn) = txn else {
        return Err(MatrixError::bad_json("A transaction is a JSON object"));
    };
    let list = |v: Option<Value>, name: &str, required: bool| match v {
        Some(Value::Array(a)) => Ok(a),
        None if !required => Ok(Vec::new()),
        _ => Err(MatrixError::bad_json(format!("`{name}` must be a list"))),
    };
    let pdus = list(txn.remove("pdus"), "pdus", true)?;
    let edus = list(txn.remove("edus"), "edus", false)?;
    if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
        return Err(MatrixError::bad_json(format!(
            "A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs; this one has {} \
             and {}",
            pdus.len(),
            edus.len()
        )));
    }
    if let Some(claimed) = txn.get("origin") {
        if claimed.as_str() != Some(origin.as_str()) {
            return Err(MatrixError::bad_json(format!(
                "The transaction's `origin` is not {origin}, the server that signed the request"
            )));
        }
    }
    let answer = state
        .federationapi
        .send(InputTransaction {
            origin,
            txn_id: txn_id.into_inner(),
            pdus,
            edus,
        })
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}
