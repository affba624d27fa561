//! VoIP and third-party networks: `/voip/turnServer`, `/thirdparty/protocols`.

use crate::routing::error::MatrixError;
use crate::routing::ruma::Ruma;
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use base64::Engine;
use hmac::{KeyInit, Mac};
use ruma::api::client::thirdparty::get_protocols;
use ruma::api::client::voip::get_turn_server_info;
use serde_json::{json, Value};

/// The TURN REST API credentials of `user_id` valid until `expiry_s` (seconds since the epoch):
/// username `<expiry>:<user>`, password base64(HMAC-SHA1(secret, username)).
pub fn turn_credentials(secret: &str, user_id: &str, expiry_s: u64) -> (String, String) {
    let username = format!("{expiry_s}:{user_id}");
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// What `/voip/turnServer` answers for `user_id` at `now_ms`: `{}` when no TURN server is
/// configured (as Synapse).
pub fn turn_server(config: &crate::config::VoipConfig, user_id: &str, now_ms: u64) -> Value {
    if config.turn_uris.is_empty() {
        return json!({});
    }
    let lifetime = config.turn_user_lifetime_ms;
    let (username, password) = if !config.turn_shared_secret.is_empty() {
        turn_credentials(
            &config.turn_shared_secret,
            user_id,
            (now_ms + lifetime) / 1000,
        )
    } else if !config.turn_username.is_empty() && !config.turn_password.is_empty() {
        (config.turn_username.clone(), config.turn_password.clone())
    } else {
        return json!({});
    };
    json!({
        "username": username,
        "password": password,
        "uris": config.turn_uris,
        "ttl": lifetime / 1000,
    })
}

/// # `GET /_matrix/client/v3/voip/turnServer`
pub async fn get_turn_server_info(
    state: web::Data<AppState>,
    req: Ruma<get_turn_server_info::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let voip = &state.config.voip;
    if req.sender.is_guest && !voip.turn_allow_guests {
        return Err(MatrixError::forbidden(
            "Guest access to TURN servers is disabled",
        ));
    }
    let now = u64::try_from(crate::storage::now_ms()).unwrap_or(0);
    // ruma's response has no empty form, so the body is written out.
    Ok(HttpResponse::Ok().json(turn_server(voip, req.sender.user_id.as_str(), now)))
}

/// # `GET /_matrix/client/v3/thirdparty/protocols`
///
/// No application service bridges third-party networks here yet: no protocols.
pub async fn get_protocols(
    _req: Ruma<get_protocols::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    Ok(HttpResponse::Ok().json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_the_turn_rest_api() {
        // Reference: python3 -c 'import hmac,hashlib,base64;
        //   print(base64.b64encode(hmac.new(b"s3cret", b"1700000000:@a:x", hashlib.sha1).digest()))'
        let (user, pass) = turn_credentials("s3cret", "@a:x", 1_700_000_000);
        assert_eq!(user, "1700000000:@a:x");
        assert_eq!(pass, "gAzqOGIQRDm9J8tW5L+mZsISRH8=");
    }

    #[test]
    fn turn_server_answers() {
        let mut c = crate::config::VoipConfig::default();
        assert_eq!(turn_server(&c, "@a:x", 0), json!({}));
        c.turn_uris = vec!["turn:turn.example.org?transport=udp".into()];
        assert_eq!(
            turn_server(&c, "@a:x", 0),
            json!({}),
            "no credentials configured"
        );
        c.turn_username = "u".into();
        c.turn_password = "p".into();
        let fixed = turn_server(&c, "@a:x", 5_000);
        assert_eq!(fixed["username"], "u");
        assert_eq!(fixed["ttl"], 3600);
        c.turn_shared_secret = "s3cret".into();
        let shared = turn_server(&c, "@a:x", 1_000_000);
        assert_eq!(shared["username"], "4600:@a:x");
        assert_eq!(shared["uris"][0], "turn:turn.example.org?transport=udp");
    }
}
