//! `QueryRemotePublicRooms`: another server's public room directory, asked of that server
//! (`GET` or `POST /_matrix/federation/v1/publicRooms`), for a client's
//! `/publicRooms?server=`.

use super::membership::enc;
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::QueryRemotePublicRooms;
use crate::actors::federationapi::FederationApiError;
use serde_json::{json, Map, Value};

/// The largest page asked of another server (Synapse caps client pages the same way).
const MAX_LIMIT: u64 = 500;

pub async fn handle(deps: &Deps, msg: QueryRemotePublicRooms) -> Result<Value, FederationApiError> {
    let limit = msg.limit.map(|l| l.min(MAX_LIMIT));
    let answer = if msg.filter.is_some() || msg.third_party_instance_id.is_some() {
        let mut body = Map::new();
        if let Some(limit) = limit {
            body.insert("limit".into(), json!(limit));
        }
        if let Some(since) = &msg.since {
            body.insert("since".into(), json!(since));
        }
        if let Some(filter) = &msg.filter {
            body.insert("filter".into(), filter.clone());
        }
        body.insert(
            "include_all_networks".into(),
            json!(msg.include_all_networks),
        );
        if let Some(id) = &msg.third_party_instance_id {
            body.insert("third_party_instance_id".into(), json!(id));
        }
        deps.client
            .post(
                &msg.server,
                "/_matrix/federation/v1/publicRooms",
                &Value::Object(body),
            )
            .await?
    } else {
        let mut query = vec![format!("include_all_networks={}", msg.include_all_networks)];
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(since) = &msg.since {
            query.push(format!("since={}", enc(since)));
        }
        let path = format!("/_matrix/federation/v1/publicRooms?{}", query.join("&"));
        deps.client.get(&msg.server, &path).await?
    };
    page(&msg.server, answer)
}

/// The known fields of another server's page; a page without a `chunk` list is refused.
fn page(server: &ruma::ServerName, answer: Value) -> Result<Value, FederationApiError> {
    let bad = |why: &str| FederationApiError::Remote {
        server: server.to_string(),
        status: 0,
        errcode: String::new(),
        error: format!("its public room directory {why}"),
    };
    let chunk: Vec<Value> = answer
        .get("chunk")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("has no chunk list"))?
        .iter()
        .filter(|r| r.get("room_id").and_then(Value::as_str).is_some())
        .cloned()
        .collect();
    let mut out = json!({ "chunk": chunk });
    for key in ["next_batch", "prev_batch"] {
        if let Some(v) = answer.get(key).and_then(Value::as_str) {
            out[key] = json!(v);
        }
    }
    if let Some(n) = answer
        .get("total_room_count_estimate")
        .and_then(Value::as_u64)
    {
        out["total_room_count_estimate"] = json!(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_fields_of_a_page_are_kept() {
        let server: &ruma::ServerName = "b.test".try_into().unwrap();
        let got = page(
            server,
            json!({
                "chunk": [{"room_id": "!a:b.test", "name": "A"}, {"name": "no id"}, 3],
                "next_batch": "n", "prev_batch": 7, "total_room_count_estimate": 2, "x": 1
            }),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"chunk": [{"room_id": "!a:b.test", "name": "A"}], "next_batch": "n",
                "total_room_count_estimate": 2})
        );
        assert!(page(server, json!({"rooms": []})).is_err());
    }
}
