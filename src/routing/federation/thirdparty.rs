//! Third-party invites redeemed: the identity server's `/3pid/onbind` callback.

use crate::actors::roomserver::messages::{PerformRoomEvent, QueryCurrentState};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::federation::thirdparty::bind_callback;
use serde_json::{json, Value};

/// # `PUT /_matrix/federation/v1/3pid/onbind`
///
/// The identity server tells this server that `address` is now bound to `mxid`, with the
/// invites it stored for the address. Each invite whose user is local, and whose room and
/// inviter are here, becomes the inviter's `m.room.member` invite of the user with
/// `third_party_invite: {display_name, signed}` in its content, as Synapse's
/// `exchange_third_party_invite` builds it. The room's auth rules (ruma's state-res) then
/// check `signed`: its `mxid` must be the invited user, its `token` the state key of an
/// `m.room.third_party_invite` event sent by the same inviter, and one of its signatures
/// must verify with one of that event's public keys. So the request needs no signature of
/// its own (the spec serves it without one): a forged `signed` is refused (403 M_FORBIDDEN).
///
/// Invites for users of other servers, rooms not known here or inviters of other servers
/// need federation; they are skipped and logged. As Synapse, every invite is tried; the
/// answer is the last failure, if any (400 M_BAD_JSON for an invite without a `signed`
/// token, mxid and signatures).
pub async fn bind_callback(
    state: web::Data<AppState>,
    req: Ruma<bind_callback::v1::Request>,
) -> RumaResult<bind_callback::v1::Response> {
    let mut failure = None;
    for invite in &req.body.invites {
        if let Err(e) = redeem(&state, invite).await {
            tracing::info!(
                room_id = %invite.room_id,
                user_id = %invite.mxid,
                errcode = e.errcode,
                error = %e.error,
                "third-party invite not redeemed"
            );
            failure = Some(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(RumaResponse(bind_callback::v1::Response::new())),
    }
}

/// Turns one stored third-party invite into the invite of the user it is now bound to.
async fn redeem(
    state: &AppState,
    invite: &bind_callback::v1::ThirdPartyInvite,
) -> Result<(), MatrixError> {
    let signed: Value = serde_json::from_str(invite.signed.json().get())
        .map_err(|_| MatrixError::bad_json("signed must be a JSON object"))?;
    let token = signed["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| MatrixError::bad_json("signed has no token"))?;
    if !signed["mxid"].is_string() || !signed["signatures"].is_object() {
        return Err(MatrixError::bad_json("signed needs mxid and signatures"));
    }
    let ours = |server: &ruma::ServerName| server.as_str() == state.server_name();
    if !ours(invite.mxid.server_name()) || !ours(invite.sender.server_name()) {
        tracing::info!(user_id = %invite.mxid, sender = %invite.sender, "third-party invite needs federation; skipped");
        return Ok(());
    }
    let mxid = invite.mxid.as_str();
    let wanted = vec![
        ("m.room.third_party_invite".to_owned(), token.to_owned()),
        ("m.room.member".to_owned(), mxid.to_owned()),
    ];
    let Some(room_state) = state
        .roomserver
        .send(QueryCurrentState {
            room_id: invite.room_id.to_string(),
            types: wanted,
        })
        .await?
    else {
        tracing::info!(room_id = %invite.room_id, "third-party invite of a room not known here; skipped");
        return Ok(());
    };
    let of_type = |t: &str| room_state.iter().find(|e| e.json["type"] == t);
    // A member already in the room has nothing to redeem (an invite would undo the join).
    if of_type("m.room.member").is_some_and(|e| e.json["content"]["membership"] == "join") {
        return Ok(());
    }
    // The name the inviter saw, from their own event; the auth rules refuse the invite
    // anyway when there is none.
    let display_name = of_type("m.room.third_party_invite")
        .and_then(|e| e.json["content"]["display_name"].as_str())
        .unwrap_or(&invite.address)
        .to_owned();
    state
        .roomserver
        .send(PerformRoomEvent {
            room_id: Some(invite.room_id.to_string()),
            room_version: None,
            sender: invite.sender.to_string(),
            event_type: "m.room.member".into(),
            state_key: Some(mxid.to_owned()),
            content: json!({
                "membership": "invite",
                "third_party_invite": { "display_name": display_name, "signed": signed },
            }),
            txn: None,
            redacts: None,
        })
        .await?;
    Ok(())
}
