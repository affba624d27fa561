//! `InputTransaction`: a transaction another server sent (`PUT /send/{txnId}`).
//!
//! - Idempotent per (origin, transaction ID): the answer is stored
//!   (`federationapi_received_transactions`) and a transaction seen before gets it back
//!   without anything being processed again. One origin's transactions are processed one at
//!   a time (a retry of a transaction still in progress waits for it, then gets its answer).
//!   An answer that holds an internal error is not stored, so a retry tries again.
//! - The origin reached us, so our queue for it stops backing off (`Queues::reachable`).
//! - PDUs are grouped by room: rooms are processed in parallel, each room's PDUs in the
//!   order sent. A room whose server ACL denies the origin (every PDU: "Server is banned
//!   from room"; typing and receipt EDUs about it are dropped), a room not known here, a PDU whose ID cannot be derived for its room's
//!   version, missing prev events that cannot be fetched, a bad signature, an event the
//!   auth rules reject: each is an `error` for that PDU only.
//! - Missing prev events are asked of the origin with `POST /get_missing_events/{roomId}`
//!   (`earliest_events` = our forward extremities, `latest_events` = the PDU, then the
//!   oldest events fetched so far; at most 10 events a round, 5 rounds, no deeper than 100
//!   below the room's depth) and input oldest first. If a gap remains, the state at each
//!   missing prev event (at most 5) is asked of the origin (`/state_ids`, then `/event` for
//!   the events not held here, or `/state` when many lack; 60 s a request, at most 20,000
//!   IDs) and the roomserver places the PDU on it (`InputRoomEventAtState`: every fetched
//!   event checked, stored as an outlier; the state before the PDU is the resolution of the
//!   states after its prev events); the PDU gets an error when that state cannot be had.
//! - EDUs, after the PDUs: `m.typing`, `m.receipt` (`m.read`) and `m.direct_to_device` go
//!   to the syncapi (`PerformTyping` for 60 s, as Synapse's federation timeout;
//!   `PerformReceipt`, at most 100 receipts an EDU; `PerformSendToDevice` for our users'
//!   devices, `*` expanded with the userapi's `QueryDevices`, at most 1000 messages an EDU,
//!   once per sender and `message_id`; `m.presence` as `PerformPresence`, at most 100
//!   updates an EDU), only for users of the origin; the syncapi checks that the user is
//!   joined (and that a receipt's event is known). A refused one is logged, never an error of
//!   the transaction. Other EDU types are not handled yet: logged and ignored, as servers do
//!   with EDU types they do not know.

use super::super::actor::Deps;
use super::super::messages::{InputTransaction, PduResult, TransactionResponse};
use super::super::storage::received_transactions;
use super::super::FederationApiError;
use crate::actors::roomserver::messages::{
    InputOutcome, InputRoomEvent, InputRoomEventAtState, PrevState, QueryRoomHead, RoomHead,
};
use crate::actors::roomserver::RoomserverError;
use crate::actors::syncapi::messages::{
    PerformPresence, PerformReceipt, PerformSendToDevice, PerformTyping,
};
use crate::actors::userapi::messages::QueryDevices;
use crate::federation::acl::server_allowed;
use crate::storage::now_ms;
use ruma::{CanonicalJsonObject, ServerName};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// Events asked for in one `/get_missing_events` round (Synapse asks for 10).
const MISSING_LIMIT: usize = 10;
/// Rounds of `/get_missing_events` for one PDU.
const MISSING_ROUNDS: usize = 5;
/// How far below the room's depth missing events are looked for.
const MISSING_DEPTH_WINDOW: i64 = 100;
/// The largest `/get_missing_events` answer read (10 PDUs of at most 64 KiB, and slack).
const MISSING_ANSWER_BYTES: usize = 2 * 1024 * 1024;

pub async fn handle(
    deps: &Deps,
    msg: InputTransaction,
) -> Result<TransactionResponse, FederationApiError> {
    let lock = deps.origin_lock(&msg.origin);
    let _turn = lock.lock().await;
    let origin = msg.origin.as_str();
    if let Some(stored) = received_transactions::select(&deps.db, origin, &msg.txn_id).await? {
        return serde_json::from_str(&stored).map_err(|e| FederationApiError::internal(e));
    }
    if let Err(e) = deps.queues.reachable(origin).await {
        tracing::warn!(destination = origin, error = %e, "could not clear a backoff");
    }

    // Each room's PDUs, in the order sent.
    let mut rooms: Vec<(String, Vec<Value>)> = Vec::new();
    for pdu in msg.pdus {
        let Some(room_id) = pdu
            .get("room_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            tracing::info!(origin, "ignoring a PDU without a room ID");
            continue;
        };
        match rooms.iter_mut().find(|(r, _)| *r == room_id) {
            Some((_, list)) => list.push(pdu),
            None => rooms.push((room_id, vec![pdu])),
        }
    }
    let results = futures_util::future::join_all(
        rooms
            .into_iter()
            .map(|(room_id, pdus)| room_pdus(deps, &msg.origin, room_id, pdus)),
    )
    .await;
    let mut response = TransactionResponse::default();
    let mut failed_inside = false;
    for (event_id, result, internal) in results.into_iter().flatten() {
        failed_inside |= internal;
        response.pdus.insert(event_id, result);
    }
    for edu in &msg.edus {
        one_edu(deps, &msg.origin, edu).await;
    }
    if !failed_inside {
        let text = serde_json::to_string(&response).map_err(|e| FederationApiError::internal(e))?;
        received_transactions::insert(&deps.db, origin, &msg.txn_id, &text, now_ms()).await?;
    }
    Ok(response)
}

/// What became of one PDU: (event ID, result, whether the error was ours).
type Outcome = (String, PduResult, bool);

fn error(event_id: String, text: impl Into<String>) -> Outcome {
    (
        event_id,
        PduResult {
            error: Some(text.into()),
        },
        false,
    )
}

/// One room's PDUs, in order.
async fn room_pdus(
    deps: &Deps,
    origin: &ServerName,
    room_id: String,
    pdus: Vec<Value>,
) -> Vec<Outcome> {
    let head = deps
        .roomserver
        .send(QueryRoomHead {
            room_id: room_id.clone(),
            event_ids: Vec::new(),
        })
        .await;
    let version = match head {
        Ok(Some(head)) => head.room_version,
        Ok(None) => {
            // Without the room's version the PDUs' IDs cannot even be derived: they are left
            // out of the answer, as Synapse leaves them ("Ignoring PDU for unknown room_id").
            tracing::info!(room_id, %origin, pdus = pdus.len(), "ignoring PDUs of a room unknown here");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!(room_id, error = %e, "room head unavailable; PDUs not processed");
            return pdus
                .iter()
                .filter_map(|pdu| {
                    let id = pdu
                        .get("event_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let id = id.or_else(|| event_id_of(pdu, &deps.default_room_version))?;
                    let mut e = error(id, "Internal error; try again");
                    e.2 = true;
                    Some(e)
                })
                .collect();
        }
    };
    // A server the room's ACL denies takes no part in it (Synapse's check_server_matches_acl).
    match server_allowed(&deps.roomserver, &room_id, origin.as_str()).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(room_id, %origin, "PDUs refused by the room's server ACL");
            return pdus
                .iter()
                .filter_map(|pdu| event_id_of(pdu, &version))
                .map(|id| error(id, "Server is banned from room"))
                .collect();
        }
        Err(e) => {
            return pdus
                .iter()
                .filter_map(|pdu| event_id_of(pdu, &version))
                .map(|id| internal(id, e.clone()))
                .collect();
        }
    }
    let mut out = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        let Some(event_id) = event_id_of(&pdu, &version) else {
            tracing::info!(room_id, %origin, "ignoring a PDU whose event ID cannot be derived");
            continue;
        };
        out.push(one_pdu(deps, origin, &room_id, &version, event_id, pdu).await);
    }
    out
}

/// The event ID of a PDU in a room of `version`, if it is a JSON object that has one.
fn event_id_of(pdu: &Value, version: &str) -> Option<String> {
    let json: CanonicalJsonObject = serde_json::from_value(pdu.clone()).ok()?;
    crate::pdu::event_id_of(&json, version)
        .ok()
        .map(|id| id.to_string())
}

/// The prev event IDs of a PDU (plain IDs, or `[id, hashes]` pairs in versions 1 and 2).
fn prev_events(pdu: &Value) -> Vec<String> {
    pdu.get("prev_events")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.clone()),
                    Value::Array(pair) => pair.first().and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One PDU: its missing prev events fetched, then input.
async fn one_pdu(
    deps: &Deps,
    origin: &ServerName,
    room_id: &str,
    version: &str,
    event_id: String,
    pdu: Value,
) -> Outcome {
    let prevs = prev_events(&pdu);
    let head = deps
        .roomserver
        .send(QueryRoomHead {
            room_id: room_id.to_owned(),
            event_ids: prevs,
        })
        .await;
    match head {
        Ok(Some(head)) if head.unknown_events.is_empty() && head.stateless_events.is_empty() => {}
        Ok(Some(mut head)) => {
            head.unknown_events.append(&mut head.stateless_events);
            if let Err(why) =
                fetch_missing(deps, origin, room_id, version, &event_id, &pdu, head).await
            {
                tracing::info!(
                    event_id,
                    why,
                    "asking for the state at the missing prev events"
                );
                return fill_gap(deps, origin, room_id, version, event_id, pdu).await;
            }
        }
        Ok(None) => {
            return error(
                event_id,
                format!("Room {room_id} is not known to this server"),
            )
        }
        Err(e) => return internal(event_id, e),
    }
    let outcome = deps
        .roomserver
        .send(InputRoomEvent {
            room_id: room_id.to_owned(),
            event: pdu,
            send_on_behalf_of: None,
        })
        .await;
    match outcome {
        Ok(InputOutcome::Accepted { .. }) | Ok(InputOutcome::SoftFailed { .. }) => {
            (event_id, PduResult::default(), false)
        }
        Ok(InputOutcome::Rejected { reason, .. }) => {
            error(event_id, format!("Refused by the auth rules: {reason}"))
        }
        Err(e) => internal(event_id, e),
    }
}

/// A roomserver error as a PDU's result: the ones about the event are its error, the others
/// (storage, a component unreachable) an internal error that keeps the answer unstored.
fn internal(event_id: String, e: RoomserverError) -> Outcome {
    match e {
        RoomserverError::NotAllowed(m)
        | RoomserverError::BadRequest(m)
        | RoomserverError::BadState(m)
        | RoomserverError::NoEvent(m) => error(event_id, m),
        RoomserverError::NoRoom => error(event_id, "Room is not known to this server"),
        RoomserverError::UnsupportedRoomVersion(v) => {
            error(event_id, format!("Unsupported room version {v}"))
        }
        RoomserverError::TooLarge => error(event_id, "Event too large"),
        other => {
            tracing::warn!(event_id, error = %other, "PDU not processed");
            let mut e = error(event_id, "Internal error; try again");
            e.2 = true;
            e
        }
    }
}

/// A missing event fetched and not input yet: (depth, event, prev events).
type Fetched = (i64, Value, Vec<String>);

/// Fetches the events between the room's forward extremities and `pdu` from `origin` and
/// inputs them oldest first. An error says why the gap remains.
async fn fetch_missing(
    deps: &Deps,
    origin: &ServerName,
    room_id: &str,
    version: &str,
    event_id: &str,
    pdu: &Value,
    head: RoomHead,
) -> Result<(), String> {
    let min_depth = (head.max_depth - MISSING_DEPTH_WINDOW).max(0);
    let path = format!(
        "/_matrix/federation/v1/get_missing_events/{}",
        percent_encoding::utf8_percent_encode(room_id, percent_encoding::NON_ALPHANUMERIC)
    );
    // Fetched events not input yet, by ID.
    let mut fetched: HashMap<String, Fetched> = HashMap::new();
    let mut latest = vec![event_id.to_owned()];
    let mut unknown = head.unknown_events;
    for _ in 0..MISSING_ROUNDS {
        let body = json!({
            "earliest_events": head.forward_extremities,
            "latest_events": latest,
            "limit": MISSING_LIMIT,
            "min_depth": min_depth,
        });
        let answer = deps
            .client
            .json(
                http::Method::POST,
                origin,
                &path,
                Some(&body),
                true,
                Some(MISSING_ANSWER_BYTES),
            )
            .await
            .map_err(|e| format!("Missing prev events could not be fetched: {e}"))?;
        let events = answer
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut new = 0;
        for ev in events.into_iter().take(MISSING_LIMIT) {
            if ev.get("room_id").and_then(Value::as_str) != Some(room_id) {
                continue;
            }
            let Some(id) = event_id_of(&ev, version) else {
                continue;
            };
            if id == event_id || fetched.contains_key(&id) {
                continue;
            }
            let depth = ev.get("depth").and_then(Value::as_i64).unwrap_or(0);
            let prevs = prev_events(&ev);
            fetched.insert(id, (depth, ev, prevs));
            new += 1;
        }
        // What is still missing: prev events of the PDU and of what was fetched that are
        // neither stored here nor fetched.
        let mut wanted: Vec<String> = prev_events(pdu);
        wanted.extend(fetched.values().flat_map(|(_, _, p)| p.iter().cloned()));
        wanted.retain(|id| !fetched.contains_key(id));
        wanted.sort();
        wanted.dedup();
        unknown = match deps
            .roomserver
            .send(QueryRoomHead {
                room_id: room_id.to_owned(),
                event_ids: wanted,
            })
            .await
        {
            Ok(Some(mut h)) => {
                h.unknown_events.append(&mut h.stateless_events);
                h.unknown_events
            }
            Ok(None) => return Err(format!("Room {room_id} is not known to this server")),
            Err(e) => return Err(format!("Internal error; try again ({e})")),
        };
        if unknown.is_empty() || new == 0 {
            break;
        }
        // Ask next for what lies before the oldest events fetched so far.
        let gap: HashSet<&String> = unknown.iter().collect();
        latest = fetched
            .iter()
            .filter(|(_, (_, _, prevs))| prevs.iter().any(|p| gap.contains(p)))
            .map(|(id, _)| id.clone())
            .collect();
        if prev_events(pdu).iter().any(|p| gap.contains(p)) {
            latest.push(event_id.to_owned());
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "Prev events {} are unknown here and {origin} did not provide them",
            unknown.join(", ")
        ));
    }
    let mut ordered: Vec<(String, Fetched)> = fetched.into_iter().collect();
    ordered.sort_by(|a, b| (a.1 .0, &a.0).cmp(&(b.1 .0, &b.0)));
    for (id, (_, ev, _)) in ordered {
        let outcome = deps
            .roomserver
            .send(InputRoomEvent {
                room_id: room_id.to_owned(),
                event: ev,
                send_on_behalf_of: None,
            })
            .await;
        match outcome {
            Ok(o) => tracing::debug!(event_id = id, outcome = ?o, "missing event input"),
            Err(e) => tracing::info!(event_id = id, error = %e, "missing event not taken"),
        }
    }
    Ok(())
}

/// The most prev events of one PDU whose state is asked for (`/state_ids`).
const GAP_PREVS: usize = 5;
/// The most event IDs (state and auth chain) taken from one `/state_ids` answer.
const GAP_STATE_IDS: usize = 20_000;
/// The most events fetched one by one (`/event`) for one PDU; when more are lacking (or a
/// tenth of the state or more), the whole state is fetched at once (`/state`), as Synapse.
const GAP_EVENT_FETCHES: usize = 100;
/// `/event` requests in flight at once.
const GAP_PARALLEL: usize = 10;
/// How long one request for the state may take.
const GAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The largest `/state_ids` or `/state` answer read.
const GAP_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Why the state at a PDU's missing prev events could not be had.
enum GapError {
    /// The origin's fault (or a bound reached): the PDU's error.
    Refused(String),
    /// Ours (a component unreachable): the transaction's answer is not kept.
    Internal(RoomserverError),
}

/// A PDU whose prev events `/get_missing_events` could not give: the state before each
/// missing prev event is asked of the origin (`/state_ids`), the events of it (and of its
/// auth chain, and the prev event itself) that are not held here are fetched (`/event`,
/// or `/state` when many lack), and the roomserver places the PDU on that state
/// (`InputRoomEventAtState`: it checks every fetched event and stores them as outliers).
/// As Synapse's `_get_state_ids_after_missing_prev_event`. Events fetched by
/// `/get_missing_events` that did not close the gap are not input.
async fn fill_gap(
    deps: &Deps,
    origin: &ServerName,
    room_id: &str,
    version: &str,
    event_id: String,
    pdu: Value,
) -> Outcome {
    let (fetched, prev_states) = match gap_state(deps, origin, room_id, version, &pdu).await {
        Ok(found) => found,
        Err(GapError::Refused(why)) => return error(event_id, why),
        Err(GapError::Internal(e)) => return internal(event_id, e),
    };
    let outcome = deps
        .roomserver
        .send(InputRoomEventAtState {
            room_id: room_id.to_owned(),
            event: pdu,
            fetched,
            prev_states,
        })
        .await;
    match outcome {
        Ok(InputOutcome::Accepted { .. }) | Ok(InputOutcome::SoftFailed { .. }) => {
            (event_id, PduResult::default(), false)
        }
        Ok(InputOutcome::Rejected { reason, .. }) => {
            error(event_id, format!("Refused by the auth rules: {reason}"))
        }
        Err(e) => internal(event_id, e),
    }
}

/// A signed GET of the origin within [`GAP_TIMEOUT`].
async fn gap_get(
    deps: &Deps,
    origin: &ServerName,
    path: &str,
    limit: Option<usize>,
) -> Result<Value, String> {
    let call = deps
        .client
        .json(http::Method::GET, origin, path, None, true, limit);
    match tokio::time::timeout(GAP_TIMEOUT, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{origin} did not answer {path} in time")),
    }
}

/// The strings of a JSON array field; `None` when it is not one.
fn id_list(v: &Value, key: &str) -> Option<Vec<String>> {
    v.get(key)?
        .as_array()?
        .iter()
        .map(|id| id.as_str().map(str::to_owned))
        .collect()
}

/// The state before each missing prev event of `pdu` and the events to fetch for it.
async fn gap_state(
    deps: &Deps,
    origin: &ServerName,
    room_id: &str,
    version: &str,
    pdu: &Value,
) -> Result<(Vec<Value>, Vec<PrevState>), GapError> {
    let head = |event_ids: Vec<String>| async {
        match deps
            .roomserver
            .send(QueryRoomHead {
                room_id: room_id.to_owned(),
                event_ids,
            })
            .await
        {
            Ok(Some(h)) => Ok(h),
            Ok(None) => Err(GapError::Refused(format!(
                "Room {room_id} is not known to this server"
            ))),
            Err(e) => Err(GapError::Internal(e)),
        }
    };
    let mut missing_prevs = head(prev_events(pdu)).await?;
    let mut prevs = missing_prevs.unknown_events.clone();
    prevs.append(&mut missing_prevs.stateless_events);
    if prevs.len() > GAP_PREVS {
        return Err(GapError::Refused(format!(
            "{} prev events are unknown here; the state of at most {GAP_PREVS} is asked for",
            prevs.len()
        )));
    }
    let room = percent_encoding::utf8_percent_encode(room_id, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let enc = |id: &str| {
        percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut prev_states = Vec::new();
    let mut desired: Vec<String> = Vec::new();
    for prev in &prevs {
        let path = format!(
            "/_matrix/federation/v1/state_ids/{room}?event_id={}",
            enc(prev)
        );
        let answer = gap_get(deps, origin, &path, Some(GAP_ANSWER_BYTES))
            .await
            .map_err(|e| {
                GapError::Refused(format!(
                    "Prev event {prev} is unknown here and {origin} did not provide it, nor the                      state at it: {e}"
                ))
            })?;
        let (Some(state), Some(auth_chain)) = (
            id_list(&answer, "pdu_ids"),
            id_list(&answer, "auth_chain_ids"),
        ) else {
            return Err(GapError::Refused(format!(
                "{origin} answered /state_ids for {prev} without pdu_ids and auth_chain_ids"
            )));
        };
        if desired.len() + state.len() + auth_chain.len() > GAP_STATE_IDS {
            return Err(GapError::Refused(format!(
                "the state at the missing prev events has more than {GAP_STATE_IDS} events"
            )));
        }
        desired.extend(state.iter().cloned());
        desired.extend(auth_chain);
        desired.push(prev.clone());
        prev_states.push(PrevState {
            event_id: prev.clone(),
            state_before: state,
        });
    }
    desired.sort();
    desired.dedup();
    let lacking = head(desired.clone()).await?.unknown_events;
    let mut fetched: Vec<Value> = Vec::new();
    if lacking.is_empty() {
        return Ok((fetched, prev_states));
    }
    let wanted: HashSet<&str> = lacking.iter().map(String::as_str).collect();
    let whole_state = lacking.len() > GAP_EVENT_FETCHES
        || (lacking.len() > 10 && lacking.len() * 10 >= desired.len());
    // Events fetched one by one: each must be the one asked for.
    let mut one_by_one: Vec<String> = if whole_state {
        prevs
            .iter()
            .filter(|p| wanted.contains(p.as_str()))
            .cloned()
            .collect()
    } else {
        lacking.clone()
    };
    if whole_state {
        for prev in &prevs {
            let path = format!("/_matrix/federation/v1/state/{room}?event_id={}", enc(prev));
            let answer = gap_get(deps, origin, &path, Some(GAP_ANSWER_BYTES))
                .await
                .map_err(|e| {
                    GapError::Refused(format!("{origin} did not provide the state at {prev}: {e}"))
                })?;
            for key in ["pdus", "auth_chain"] {
                for ev in answer
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if event_id_of(ev, version).is_some_and(|id| wanted.contains(id.as_str())) {
                        fetched.push(ev.clone());
                    }
                }
            }
        }
    }
    one_by_one.sort();
    one_by_one.dedup();
    for chunk in one_by_one.chunks(GAP_PARALLEL) {
        let answers = futures_util::future::join_all(chunk.iter().map(|id| async move {
            let path = format!("/_matrix/federation/v1/event/{}", enc(id));
            (
                id,
                gap_get(deps, origin, &path, Some(MISSING_ANSWER_BYTES)).await,
            )
        }))
        .await;
        for (id, answer) in answers {
            let ev = match answer {
                Ok(answer) => answer
                    .get("pdus")
                    .and_then(Value::as_array)
                    .and_then(|p| p.first())
                    .cloned(),
                Err(e) => {
                    tracing::info!(event_id = id, %origin, error = e, "event not fetched");
                    None
                }
            };
            // The roomserver refuses the PDU when a state event lacks; others may.
            match ev {
                Some(ev) if event_id_of(&ev, version).as_deref() == Some(id.as_str()) => {
                    fetched.push(ev)
                }
                Some(_) => {
                    tracing::info!(event_id = id, %origin, "fetched another event than asked")
                }
                None => {}
            }
        }
    }
    Ok((fetched, prev_states))
}

/// How long a typing notification from another server lasts without a refresh (Synapse's
/// `FEDERATION_TIMEOUT`).
const REMOTE_TYPING_MS: u64 = 60_000;
/// The most presence updates taken from one `m.presence` EDU.
const MAX_PRESENCE_PER_EDU: usize = 100;
/// The most receipts taken from one `m.receipt` EDU.
const MAX_RECEIPTS_PER_EDU: usize = 100;

/// One EDU of a transaction; what cannot be taken is logged.
async fn one_edu(deps: &Deps, origin: &ServerName, edu: &Value) {
    let kind = edu.get("edu_type").and_then(Value::as_str).unwrap_or("");
    let content = edu.get("content").unwrap_or(&Value::Null);
    let ours =
        |user: &str| super::super::consumers::roomserver::server_of(user) == Some(origin.as_str());
    match kind {
        "m.typing" => {
            let text = |k: &str| content.get(k).and_then(Value::as_str).map(str::to_owned);
            let (Some(room_id), Some(user_id)) = (text("room_id"), text("user_id")) else {
                tracing::info!(%origin, "malformed m.typing EDU ignored");
                return;
            };
            if !ours(&user_id) {
                tracing::info!(%origin, user_id, "m.typing EDU about another server's user ignored");
                return;
            }
            if !acl_allows(deps, &room_id, origin).await {
                return;
            }
            let typing = content
                .get("typing")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let sent = deps
                .syncapi
                .send(PerformTyping {
                    room_id,
                    user_id,
                    typing,
                    timeout_ms: REMOTE_TYPING_MS,
                })
                .await;
            if let Err(e) = sent {
                tracing::info!(%origin, error = %e, "m.typing EDU not taken");
            }
        }
        "m.receipt" => {
            let Some(rooms) = content.as_object() else {
                tracing::info!(%origin, "malformed m.receipt EDU ignored");
                return;
            };
            let mut receipts = Vec::new();
            for (room_id, by_type) in rooms.iter().take(MAX_RECEIPTS_PER_EDU) {
                let Some(users) = by_type.get("m.read").and_then(Value::as_object) else {
                    continue;
                };
                if !acl_allows(deps, room_id, origin).await {
                    continue;
                }
                for (user_id, receipt) in users {
                    let event_id = receipt
                        .get("event_ids")
                        .and_then(Value::as_array)
                        .and_then(|ids| ids.last())
                        .and_then(Value::as_str);
                    let thread_id = receipt
                        .get("data")
                        .and_then(|d| d.get("thread_id"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    match event_id {
                        Some(event_id) if ours(user_id) => receipts.push(PerformReceipt {
                            room_id: room_id.clone(),
                            user_id: user_id.clone(),
                            receipt_type: "m.read".into(),
                            event_id: event_id.to_owned(),
                            thread_id,
                        }),
                        _ => tracing::info!(%origin, user_id, "receipt ignored"),
                    }
                }
            }
            for receipt in receipts.into_iter().take(MAX_RECEIPTS_PER_EDU) {
                let user_id = receipt.user_id.clone();
                if let Err(e) = deps.syncapi.send(receipt).await {
                    tracing::info!(%origin, user_id, error = %e, "receipt not taken");
                }
            }
        }
        "m.direct_to_device" => to_device(deps, origin, content).await,
        "m.presence" => {
            let updates = content.get("push").and_then(Value::as_array);
            for update in updates.into_iter().flatten().take(MAX_PRESENCE_PER_EDU) {
                let text = |k: &str| update.get(k).and_then(Value::as_str).map(str::to_owned);
                let (Some(user_id), Some(presence)) = (text("user_id"), text("presence")) else {
                    continue;
                };
                if !ours(&user_id) {
                    tracing::info!(%origin, user_id, "presence of another server's user ignored");
                    continue;
                }
                let set = PerformPresence {
                    user_id: user_id.clone(),
                    presence,
                    status_msg: text("status_msg"),
                };
                if let Err(e) = deps.syncapi.send(set).await {
                    tracing::info!(%origin, user_id, error = %e, "presence not taken");
                }
            }
        }
        _ => tracing::debug!(%origin, edu_type = kind, "EDU type not handled; ignored"),
    }
}

/// The most messages taken from one `m.direct_to_device` EDU (devices included).
const MAX_TO_DEVICE_PER_EDU: usize = 1000;

/// An `m.direct_to_device` EDU: the messages for our users' devices (`*`: every device),
/// from a sender of the origin, handed to the syncapi once per (sender, `message_id`).
async fn to_device(deps: &Deps, origin: &ServerName, content: &Value) {
    let text = |k: &str| content.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(sender), Some(event_type), Some(message_id), Some(messages)) = (
        text("sender"),
        text("type"),
        text("message_id"),
        content.get("messages").and_then(Value::as_object),
    ) else {
        tracing::info!(%origin, "malformed m.direct_to_device EDU ignored");
        return;
    };
    if super::super::consumers::roomserver::server_of(&sender) != Some(origin.as_str()) {
        tracing::info!(%origin, sender, "to-device messages of another server's user ignored");
        return;
    }
    let ours = deps.server_name.as_str();
    let mut expanded = Vec::new();
    for (user, devices) in messages {
        let Some(localpart) = user
            .strip_prefix('@')
            .and_then(|u| u.split_once(':'))
            .filter(|(_, server)| *server == ours)
            .map(|(local, _)| local.to_owned())
        else {
            continue;
        };
        let Some(devices) = devices.as_object() else {
            continue;
        };
        for (device, message) in devices {
            if !message.is_object() {
                continue;
            }
            if device == "*" {
                match deps
                    .userapi
                    .send(QueryDevices {
                        localpart: localpart.clone(),
                    })
                    .await
                {
                    Ok(all) => expanded.extend(
                        all.into_iter()
                            .map(|d| (user.clone(), d.device_id, message.clone())),
                    ),
                    Err(e) => tracing::info!(%origin, user, error = %e, "devices unknown"),
                }
            } else {
                expanded.push((user.clone(), device.clone(), message.clone()));
            }
        }
    }
    expanded.truncate(MAX_TO_DEVICE_PER_EDU);
    if expanded.is_empty() {
        return;
    }
    let sent = deps
        .syncapi
        .send(PerformSendToDevice {
            sender,
            // The EDU has no device; the origin stands for it, so a message ID is taken once
            // per sender and origin.
            sender_device: format!("federation:{origin}"),
            txn_id: message_id,
            event_type,
            messages: expanded,
        })
        .await;
    if let Err(e) = sent {
        tracing::info!(%origin, error = %e, "to-device messages not taken");
    }
}

/// Whether the room's server ACL lets `origin` take part (EDUs about a room); a refusal or a
/// failure to tell is logged.
async fn acl_allows(deps: &Deps, room_id: &str, origin: &ServerName) -> bool {
    match server_allowed(&deps.roomserver, room_id, origin.as_str()).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!(room_id, %origin, "EDU refused by the room's server ACL");
            false
        }
        Err(e) => {
            tracing::info!(room_id, %origin, error = %e, "server ACL unknown; EDU ignored");
            false
        }
    }
}
