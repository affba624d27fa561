//! The client API of the foundation, end to end over HTTP: every endpoint and its error
//! cases, on SQLite and PostgreSQL, with the userapi in-process and behind the HTTP bridge.

mod common;

use common::{assert_error, Backend, TestServer, Topology};
use serde_json::json;

const C: &str = "/_matrix/client/v3";

async fn discovery(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["server.public_baseurl=https://matrix.test.local/"]).await;
    let (st, v) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(st, 200);
    assert!(v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "v1.1"));
    assert_error(
        &s.post("/_matrix/client/versions", None, json!({})).await,
        405,
        "M_UNRECOGNIZED",
    );
    let (st, v) = s.get("/.well-known/matrix/client", None).await;
    assert_eq!(
        (st, v["m.homeserver"]["base_url"].as_str()),
        (200, Some("https://matrix.test.local"))
    );
    let (st, v) = s.get("/.well-known/matrix/server", None).await;
    assert_eq!((st, v["m.server"].as_str()), (200, Some("test.local")));
    assert_error(
        &s.get(&format!("{C}/capabilities"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    let (_, tok, _) = s.register("alice", "pw").await;
    let (st, v) = s.get(&format!("{C}/capabilities"), Some(&tok)).await;
    assert_eq!(st, 200);
    assert_eq!(v["capabilities"]["m.change_password"]["enabled"], true);
    assert_eq!(v["capabilities"]["m.room_versions"]["default"], "12");
    assert_error(
        &s.get(&format!("{C}/no/such/endpoint"), None).await,
        404,
        "M_UNRECOGNIZED",
    );
    // HEAD is served wherever GET is, without a body.
    let resp = s
        .client
        .request(
            awc::http::Method::HEAD,
            format!("{}/_matrix/client/versions", s.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_error(&s.get("/nowhere", None).await, 404, "M_UNRECOGNIZED");
    // CORS: preflight and ordinary responses.
    let resp = s
        .client
        .request(awc::http::Method::OPTIONS, format!("{}{C}/login", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    assert!(resp
        .headers()
        .get("access-control-allow-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Authorization"));
    let resp = s
        .client
        .get(format!("{}/_matrix/client/versions", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-methods").unwrap(),
        "GET, POST, PUT, DELETE, OPTIONS"
    );
    s.stop().await;
}

async fn registration(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let reg = format!("{C}/register");
    // First call: the flows and a session.
    let (st, v) = s
        .post(&reg, None, json!({"username": "alice", "password": "pw"}))
        .await;
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["flows"], json!([{"stages": ["m.login.dummy"]}]));
    let session = v["session"].as_str().unwrap().to_owned();
    assert!(v.get("errcode").is_none());
    let (st, v) = s
        .post(&reg, None, json!({"username": "Alice", "password": "pw", "device_id": "MYDEVICE",
            "initial_device_display_name": "My phone", "auth": {"type": "m.login.dummy", "session": session}}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["user_id"], "@alice:test.local", "upper case is folded");
    assert_eq!(v["device_id"], "MYDEVICE");
    let tok = v["access_token"].as_str().unwrap().to_owned();
    let (st, d) = s.get(&format!("{C}/devices/MYDEVICE"), Some(&tok)).await;
    assert_eq!((st, d["display_name"].as_str()), (200, Some("My phone")));
    // A used session answers with the account it registered (as Synapse), whatever else
    // the repeat says; an unknown one is refused.
    let (st, again) = s.post(&reg, None, json!({"username": "x1", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(
        (st, again["user_id"].as_str()),
        (200, Some("@alice:test.local")),
        "{again}"
    );
    assert_error(
        &s.post(&reg, None, json!({"username": "x1", "password": "pw", "auth": {"type": "m.login.dummy", "session": "nope"}})).await,
        400,
        "M_UNKNOWN",
    );
    // Names: taken, invalid, availability.
    assert_error(
        &s.post(
            &reg,
            None,
            json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}),
        )
        .await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(
        &s.post(
            &reg,
            None,
            json!({"username": "bad name", "password": "pw"}),
        )
        .await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &s.post(
            &reg,
            None,
            json!({"username": "_reserved", "password": "pw"}),
        )
        .await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &s.get(&format!("{C}/register/available?username=alice"), None)
            .await,
        400,
        "M_USER_IN_USE",
    );
    assert_error(
        &s.get(&format!("{C}/register/available?username=b%20c"), None)
            .await,
        400,
        "M_INVALID_USERNAME",
    );
    assert_error(
        &s.get(&format!("{C}/register/available"), None).await,
        400,
        "M_MISSING_PARAM",
    );
    let (st, v) = s
        .get(&format!("{C}/register/available?username=bob"), None)
        .await;
    assert_eq!((st, v["available"].as_bool()), (200, Some(true)));
    // Password rules.
    assert_error(
        &s.post(
            &reg,
            None,
            json!({"username": "nopw", "auth": {"type": "m.login.dummy"}}),
        )
        .await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &s.post(
            &reg,
            None,
            json!({"username": "longpw", "password": "x".repeat(513)}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    // inhibit_login: an account, no session.
    let (st, v) = s.post(&reg, None, json!({"username": "quiet", "password": "pw", "inhibit_login": true, "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(st, 200);
    assert_eq!(v["user_id"], "@quiet:test.local");
    assert!(v.get("access_token").is_none(), "{v}");
    assert_eq!(s.login("quiet", "pw").await.0, 200);
    // No username: one is made up.
    let (st, v) = s
        .post(
            &reg,
            None,
            json!({"password": "pw", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(st, 200);
    assert!(v["user_id"].as_str().unwrap().ends_with(":test.local"));
    // Refresh tokens on request.
    let (st, v) = s.post(&reg, None, json!({"username": "fresh", "password": "pw", "refresh_token": true, "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(st, 200);
    assert!(
        v["refresh_token"].is_string() && v["expires_in_ms"].as_u64().unwrap() > 0,
        "{v}"
    );
    // Unknown auth stage; guest registration switched off.
    assert_eq!(s.post(&reg, None, json!({"username": "st", "password": "pw", "auth": {"type": "m.login.recaptcha", "response": "x"}})).await.0, 401);
    assert_error(
        &s.post(&format!("{reg}?kind=guest"), None, json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    s.stop().await;
}

async fn registration_switches(b: Backend, t: Topology) {
    let closed = TestServer::start(b, t, &["registration.enabled=false"]).await;
    assert_error(
        &closed
            .post(
                &format!("{C}/register"),
                None,
                json!({"username": "a", "password": "pw", "auth": {"type": "m.login.dummy"}}),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
    closed.stop().await;

    let s = TestServer::start(
        b,
        t,
        &[
            "registration.tokens=[\"letmein\"]",
            "registration.guests=true",
        ],
    )
    .await;
    let reg = format!("{C}/register");
    let (st, v) = s
        .post(&reg, None, json!({"username": "a", "password": "pw"}))
        .await;
    assert_eq!(st, 401);
    assert_eq!(
        v["flows"],
        json!([{"stages": ["m.login.registration_token"]}])
    );
    let session = v["session"].as_str().unwrap().to_owned();
    assert_eq!(s.post(&reg, None, json!({"username": "a", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}})).await.0, 401);
    let bad = s.post(&reg, None, json!({"username": "a", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "nope", "session": session}})).await;
    assert_error(&bad, 401, "M_UNAUTHORIZED");
    assert_eq!(bad.1["session"], session.as_str());
    let (st, v) = s.post(&reg, None, json!({"username": "a", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "letmein", "session": session}})).await;
    assert_eq!(st, 200, "{v}");
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    assert_eq!(
        s.get(&format!("{validity}?token=letmein"), None).await.1["valid"],
        true
    );
    assert_eq!(
        s.get(&format!("{validity}?token=other"), None).await.1["valid"],
        false
    );
    // Guests.
    let (st, v) = s.post(&format!("{reg}?kind=guest"), None, json!({})).await;
    assert_eq!(st, 200, "{v}");
    let guest = v["access_token"].as_str();
    let (st, w) = s.get(&format!("{C}/account/whoami"), guest).await;
    assert_eq!((st, w["is_guest"].as_bool()), (200, Some(true)));
    // Guests reach only what the spec opens to them.
    let guest_id = w["user_id"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("{C}/devices"), guest).await.0, 200);
    assert_eq!(
        s.put(
            &format!("{C}/profile/{guest_id}/displayname"),
            guest,
            json!({"displayname": "Visitor"})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.put(
            &format!("{C}/profile/{guest_id}/avatar_url"),
            guest,
            json!({"avatar_url": "mxc://x/y"}),
        )
        .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    assert_error(
        &s.put(
            &format!("{C}/user/{guest_id}/account_data/x"),
            guest,
            json!({}),
        )
        .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    assert_error(
        &s.post(&format!("{C}/user/{guest_id}/filter"), guest, json!({}))
            .await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    s.stop().await;
}

async fn login_and_sessions(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (uid, tok1, dev1) = s.register("alice", "secret").await;
    let (st, v) = s.get(&format!("{C}/login"), None).await;
    assert_eq!(
        (st, v["flows"][0]["type"].as_str()),
        (200, Some("m.login.password"))
    );
    // Localpart, full ID and the legacy `user` field.
    let (st, v) = s.login("alice", "secret").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["user_id"], uid.as_str());
    assert_eq!(s.login(&uid, "secret").await.0, 200);
    assert_eq!(s.login("ALICE", "secret").await.0, 200);
    let (st, _) = s
        .post(
            &format!("{C}/login"),
            None,
            json!({"type": "m.login.password", "user": "alice", "password": "secret"}),
        )
        .await;
    assert_eq!(st, 200);
    // Failures.
    assert_error(&s.login("alice", "wrong").await, 403, "M_FORBIDDEN");
    assert_error(&s.login("nobody", "secret").await, 403, "M_FORBIDDEN");
    assert_error(
        &s.login("@alice:elsewhere.org", "secret").await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(&format!("{C}/login"), None, json!({"password": "secret"}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &s.post(
            &format!("{C}/login"),
            None,
            json!({"type": "m.login.token", "token": "x"}),
        )
        .await,
        400,
        "M_UNKNOWN",
    );
    // An existing device ID is reused, not duplicated.
    let (st, v) = s.post(&format!("{C}/login"), None, json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "secret", "device_id": dev1})).await;
    assert_eq!((st, v["device_id"].as_str()), (200, Some(dev1.as_str())));
    let tok_reused = v["access_token"].as_str().unwrap().to_owned();
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&tok1)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // whoami, by header and by query parameter.
    let (st, w) = s
        .get(&format!("{C}/account/whoami"), Some(&tok_reused))
        .await;
    assert_eq!(st, 200);
    assert_eq!(w["user_id"], uid.as_str());
    assert_eq!(w["device_id"], dev1.as_str());
    assert!(!w.get("is_guest").and_then(|g| g.as_bool()).unwrap_or(false));
    let (st, _) = s
        .get(
            &format!("{C}/account/whoami?access_token={tok_reused}"),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_error(
        &s.get(&format!("{C}/account/whoami"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some("mya_nonsense"))
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // logout kills one session, logout/all every one.
    let (_, v) = s.login("alice", "secret").await;
    let tok2 = v["access_token"].as_str().unwrap().to_owned();
    let (_, v) = s.login("alice", "secret").await;
    let tok3 = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.post(&format!("{C}/logout"), Some(&tok2), json!({}))
            .await
            .0,
        200
    );
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&tok2)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(
        s.get(&format!("{C}/account/whoami"), Some(&tok3)).await.0,
        200
    );
    assert_eq!(
        s.post(&format!("{C}/logout/all"), Some(&tok3), json!({}))
            .await
            .0,
        200
    );
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&tok3)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&tok_reused))
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &s.post(&format!("{C}/logout"), None, json!({})).await,
        401,
        "M_MISSING_TOKEN",
    );
    s.stop().await;
}

async fn refresh_tokens(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    s.register("alice", "pw").await;
    let (st, v) = s.post(&format!("{C}/login"), None, json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw", "refresh_token": true})).await;
    assert_eq!(st, 200);
    let (access, refresh) = (
        v["access_token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert!(v["expires_in_ms"].as_u64().is_some());
    let (st, r) = s
        .post(
            &format!("{C}/refresh"),
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let (lost_access, lost_refresh) = (
        r["access_token"].as_str().unwrap().to_owned(),
        r["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_ne!(access, lost_access);
    // A lost response: the old refresh token still works until the new tokens are used.
    let (st, retry) = s
        .post(
            &format!("{C}/refresh"),
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(st, 200, "{retry}");
    let (access2, refresh2) = (
        retry["access_token"].as_str().unwrap().to_owned(),
        retry["refresh_token"].as_str().unwrap().to_owned(),
    );
    // The retry revoked the lost pair.
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&lost_access))
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &s.post(
            &format!("{C}/refresh"),
            None,
            json!({"refresh_token": lost_refresh}),
        )
        .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(
        s.get(&format!("{C}/account/whoami"), Some(&access2))
            .await
            .0,
        200
    );
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&access)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &s.post(
            &format!("{C}/refresh"),
            None,
            json!({"refresh_token": refresh}),
        )
        .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(
        s.post(
            &format!("{C}/refresh"),
            None,
            json!({"refresh_token": refresh2})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.post(&format!("{C}/refresh"), None, json!({})).await,
        400,
        "M_BAD_JSON",
    );
    s.stop().await;

    // Tokens past their lifetime: 401 with soft_logout, and the refresh still works.
    let s = TestServer::start(b, t, &["auth.access_token_lifetime_ms=1"]).await;
    s.register("bob", "pw").await;
    let (_, v) = s.post(&format!("{C}/login"), None, json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "pw", "refresh_token": true})).await;
    // The 1 ms lifetime is over once the clock has moved on.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    let expired = s
        .get(&format!("{C}/account/whoami"), v["access_token"].as_str())
        .await;
    assert_error(&expired, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.1["soft_logout"], true);
    assert_eq!(
        s.post(
            &format!("{C}/refresh"),
            None,
            json!({"refresh_token": v["refresh_token"]})
        )
        .await
        .0,
        200
    );
    s.stop().await;
}

async fn password_change(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (uid, tok, _) = s.register("alice", "old").await;
    let (_, other) = s.login("alice", "old").await;
    let other = other["access_token"].as_str().unwrap().to_owned();
    let url = format!("{C}/account/password");
    let (st, v) = s
        .post(&url, Some(&tok), json!({"new_password": "new"}))
        .await;
    assert_eq!(st, 401);
    assert_eq!(v["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = v["session"].as_str().unwrap().to_owned();
    let auth = |pw: &str, user: &str| json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": pw, "session": session});
    let wrong = s
        .post(
            &url,
            Some(&tok),
            json!({"new_password": "new", "auth": auth("nope", "alice")}),
        )
        .await;
    assert_error(&wrong, 401, "M_FORBIDDEN");
    // Proving to be someone else does not help.
    s.register("mallory", "mal").await;
    assert_error(
        &s.post(
            &url,
            Some(&tok),
            json!({"new_password": "new", "auth": auth("mal", "mallory")}),
        )
        .await,
        401,
        "M_FORBIDDEN",
    );
    let (st, v) = s
        .post(
            &url,
            Some(&tok),
            json!({"new_password": "new", "auth": auth("old", &uid)}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // logout_devices defaults to true: the other session is gone, this one stays.
    assert_eq!(
        s.get(&format!("{C}/account/whoami"), Some(&tok)).await.0,
        200
    );
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&other)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(&s.login("alice", "old").await, 403, "M_FORBIDDEN");
    let (st, v) = s.login("alice", "new").await;
    assert_eq!(st, 200);
    let keep = v["access_token"].as_str().unwrap().to_owned();
    // logout_devices: false keeps the others.
    let (_, v) = s
        .post(
            &url,
            Some(&tok),
            json!({"new_password": "newer", "logout_devices": false}),
        )
        .await;
    let session = v["session"].as_str().unwrap().to_owned();
    let (st, _) = s.post(&url, Some(&tok), json!({"new_password": "newer", "logout_devices": false, "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "new", "session": session}})).await;
    assert_eq!(st, 200);
    assert_eq!(
        s.get(&format!("{C}/account/whoami"), Some(&keep)).await.0,
        200
    );
    assert_error(
        &s.post(&url, None, json!({"new_password": "x"})).await,
        401,
        "M_MISSING_TOKEN",
    );
    s.stop().await;
}

async fn deactivation(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let url = format!("{C}/account/deactivate");
    let (st, v) = s.post(&url, Some(&tok), json!({})).await;
    assert_eq!(st, 401);
    let session = v["session"].as_str().unwrap().to_owned();
    let (st, v) = s.post(&url, Some(&tok), json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw", "session": session}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["id_server_unbind_result"], "no-support");
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&tok)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(&s.login("alice", "pw").await, 403, "M_FORBIDDEN");
    assert_error(
        &s.get(&format!("{C}/register/available?username=alice"), None)
            .await,
        400,
        "M_USER_IN_USE",
    );
    s.stop().await;
}

async fn third_party_ids(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (st, v) = s.get(&format!("{C}/account/3pid"), Some(&tok)).await;
    assert_eq!((st, v), (200, json!({"threepids": []})));
    assert_error(
        &s.post(
            &format!("{C}/account/3pid/add"),
            Some(&tok),
            json!({"client_secret": "abc", "sid": "1"}),
        )
        .await,
        403,
        "M_THREEPID_DENIED",
    );
    assert_error(
        &s.post(
            &format!("{C}/account/3pid/bind"),
            Some(&tok),
            json!({"client_secret": "abc", "sid": "1", "id_server": "x", "id_access_token": "y"}),
        )
        .await,
        403,
        "M_THREEPID_DENIED",
    );
    assert_error(
        &s.post(
            &format!("{C}/account/3pid/email/requestToken"),
            None,
            json!({"client_secret": "abc", "email": "a@b.c", "send_attempt": 1}),
        )
        .await,
        403,
        "M_THREEPID_DENIED",
    );
    assert_error(
        &s.get(&format!("{C}/account/3pid"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    s.stop().await;
}

async fn devices(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, dev) = s.register("alice", "pw").await;
    let (_, v) = s.login("alice", "pw").await;
    let (tok2, dev2) = (
        v["access_token"].as_str().unwrap().to_owned(),
        v["device_id"].as_str().unwrap().to_owned(),
    );
    let (st, v) = s.get(&format!("{C}/devices"), Some(&tok)).await;
    assert_eq!(st, 200);
    let list = v["devices"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let mine = list
        .iter()
        .find(|d| d["device_id"] == dev.as_str())
        .unwrap();
    assert_eq!(mine["last_seen_ip"], "127.0.0.1");
    assert!(mine["last_seen_ts"].as_u64().unwrap() > 0);
    // Rename, and the errors of unknown devices.
    assert_eq!(
        s.put(
            &format!("{C}/devices/{dev}"),
            Some(&tok),
            json!({"display_name": "laptop"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.get(&format!("{C}/devices/{dev}"), Some(&tok)).await.1["display_name"],
        "laptop"
    );
    assert_error(
        &s.get(&format!("{C}/devices/NOPE"), Some(&tok)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(
            &format!("{C}/devices/NOPE"),
            Some(&tok),
            json!({"display_name": "x"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.call(
            "DELETE",
            &format!("{C}/devices/NOPE"),
            Some(&tok),
            Some(json!({})),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(
            &format!("{C}/devices/{dev}"),
            Some(&tok),
            json!({"display_name": 5}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    // Delete behind UIA.
    let (st, v) = s
        .call(
            "DELETE",
            &format!("{C}/devices/{dev2}"),
            Some(&tok),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 401);
    let session = v["session"].as_str().unwrap().to_owned();
    let (st, _) = s.call("DELETE", &format!("{C}/devices/{dev2}"), Some(&tok), Some(json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw", "session": session}}))).await;
    assert_eq!(st, 200);
    assert_error(
        &s.get(&format!("{C}/account/whoami"), Some(&tok2)).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // delete_devices, with a session from another request refused.
    let (_, v) = s.login("alice", "pw").await;
    let dev3 = v["device_id"].as_str().unwrap().to_owned();
    let (st, v) = s
        .post(
            &format!("{C}/delete_devices"),
            Some(&tok),
            json!({"devices": [dev3]}),
        )
        .await;
    assert_eq!(st, 401);
    let session = v["session"].as_str().unwrap().to_owned();
    let other_req = s.post(&format!("{C}/delete_devices"), Some(&tok), json!({"devices": [dev], "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw", "session": session}})).await;
    assert_error(&other_req, 403, "M_FORBIDDEN");
    let (st, _) = s.post(&format!("{C}/delete_devices"), Some(&tok), json!({"devices": [dev3], "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw", "session": session}})).await;
    assert_eq!(st, 200);
    let (_, v) = s.get(&format!("{C}/devices"), Some(&tok)).await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 1);
    assert_error(
        &s.get(&format!("{C}/devices"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    s.stop().await;
}

async fn profiles(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (uid, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let p = format!("{C}/profile/{uid}");
    assert_eq!(
        s.get(&format!("{p}/displayname"), None).await.1["displayname"],
        "alice"
    );
    assert_eq!(
        s.put(
            &format!("{p}/displayname"),
            Some(&tok),
            json!({"displayname": "Alice A."})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.put(
            &format!("{p}/avatar_url"),
            Some(&tok),
            json!({"avatar_url": "mxc://test.local/abc"})
        )
        .await
        .0,
        200
    );
    let (st, v) = s.get(&p, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({"displayname": "Alice A.", "avatar_url": "mxc://test.local/abc"})
    );
    assert_eq!(
        s.get(&format!("{p}/avatar_url"), None).await.1["avatar_url"],
        "mxc://test.local/abc"
    );
    assert_error(
        &s.put(
            &format!("{p}/displayname"),
            Some(&bob_tok),
            json!({"displayname": "evil"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(
            &format!("{p}/avatar_url"),
            Some(&bob_tok),
            json!({"avatar_url": "mxc://x/y"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(
            &format!("{p}/displayname"),
            None,
            json!({"displayname": "x"}),
        )
        .await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.put(
            &format!("{p}/displayname"),
            Some(&tok),
            json!({"displayname": "x".repeat(300)}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&format!("{C}/profile/@nobody:test.local"), None)
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/profile/@nobody:test.local/displayname"), None)
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/profile/not-a-user-id"), None).await,
        400,
        "M_INVALID_PARAM",
    );
    // Clearing the avatar.
    assert_eq!(
        s.put(
            &format!("{p}/avatar_url"),
            Some(&tok),
            json!({"avatar_url": ""})
        )
        .await
        .0,
        200
    );
    assert_eq!(s.get(&p, None).await.1, json!({"displayname": "Alice A."}));
    s.stop().await;
}

async fn account_data(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (uid, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let g = format!("{C}/user/{uid}/account_data/org.example.settings");
    assert_error(&s.get(&g, Some(&tok)).await, 404, "M_NOT_FOUND");
    assert_eq!(s.put(&g, Some(&tok), json!({"theme": "dark"})).await.0, 200);
    assert_eq!(s.get(&g, Some(&tok)).await, (200, json!({"theme": "dark"})));
    assert_eq!(
        s.put(&g, Some(&tok), json!({"theme": "light"})).await.0,
        200
    );
    assert_eq!(s.get(&g, Some(&tok)).await.1, json!({"theme": "light"}));
    let r = format!("{C}/user/{uid}/rooms/!room:test.local/account_data/m.tag.like");
    assert_eq!(s.put(&r, Some(&tok), json!({"v": 1})).await.0, 200);
    assert_eq!(s.get(&r, Some(&tok)).await.1, json!({"v": 1}));
    assert_error(
        &s.get(
            &format!("{C}/user/{uid}/rooms/!other:test.local/account_data/m.tag.like"),
            Some(&tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    // Errors: another user, not an object, a reserved type, a bad room ID.
    assert_error(&s.get(&g, Some(&bob_tok)).await, 403, "M_FORBIDDEN");
    assert_error(
        &s.put(&g, Some(&bob_tok), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(
            &format!("{C}/user/{bob}/account_data/x"),
            Some(&tok),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(&g, Some(&tok), json!([1, 2])).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &s.put(
            &format!("{C}/user/{uid}/account_data/m.fully_read"),
            Some(&tok),
            json!({}),
        )
        .await,
        405,
        "M_BAD_JSON",
    );
    assert_error(
        &s.put(
            &format!("{C}/user/{uid}/rooms/notaroom/account_data/x"),
            Some(&tok),
            json!({}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(&s.get(&g, None).await, 401, "M_MISSING_TOKEN");
    s.stop().await;
}

async fn filters(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (uid, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let filter = json!({"room": {"timeline": {"limit": 10, "types": ["m.room.message"]}}, "presence": {"not_types": ["*"]}});
    let (st, v) = s
        .post(
            &format!("{C}/user/{uid}/filter"),
            Some(&tok),
            filter.clone(),
        )
        .await;
    assert_eq!(st, 200);
    let id = v["filter_id"].as_str().unwrap().to_owned();
    let (st, got) = s
        .get(&format!("{C}/user/{uid}/filter/{id}"), Some(&tok))
        .await;
    assert_eq!(st, 200);
    assert_eq!(got["room"]["timeline"]["limit"], 10);
    assert_eq!(got["presence"]["not_types"], json!(["*"]));
    let (_, v2) = s
        .post(&format!("{C}/user/{uid}/filter"), Some(&tok), json!({}))
        .await;
    assert_ne!(v2["filter_id"], v["filter_id"]);
    assert_error(
        &s.get(&format!("{C}/user/{uid}/filter/999"), Some(&tok))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/user/{uid}/filter/abc"), Some(&tok))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/user/{uid}/filter/{id}"), Some(&bob_tok))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(&format!("{C}/user/{uid}/filter"), Some(&bob_tok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            &format!("{C}/user/{uid}/filter"),
            Some(&tok),
            json!({"room": {"timeline": {"limit": "ten"}}}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    s.stop().await;
}

async fn request_errors(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["server.max_request_bytes=4096"]).await;
    let (uid, tok, _) = s.register("alice", "pw").await;
    let login = format!("{C}/login");
    assert_error(
        &s.call_raw("POST", &login, None, b"{not json".to_vec())
            .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(
        &s.call_raw(
            "POST",
            &login,
            None,
            b"{\"type\": \"m.login.password\", ".to_vec(),
        )
        .await,
        400,
        "M_NOT_JSON",
    );
    assert_error(&s.post(&login, None, json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5}, "password": "pw"})).await, 400, "M_BAD_JSON");
    assert_error(
        &s.post(&format!("{C}/register"), None, json!({"username": 5}))
            .await,
        400,
        "M_BAD_JSON",
    );
    let big = format!("{{\"displayname\": \"{}\"}}", "x".repeat(8000)).into_bytes();
    assert_error(
        &s.call_raw(
            "PUT",
            &format!("{C}/profile/{uid}/displayname"),
            Some(&tok),
            big,
        )
        .await,
        413,
        "M_TOO_LARGE",
    );
    assert_error(
        &s.call("DELETE", &format!("{C}/account/whoami"), Some(&tok), None)
            .await,
        405,
        "M_UNRECOGNIZED",
    );
    s.stop().await;
}

async fn rate_limits(b: Backend, t: Topology) {
    let s = TestServer::start(
        b,
        t,
        &[
            "rate_limit.enabled=true",
            "rate_limit.per_second=0.2",
            "rate_limit.burst=3",
        ],
    )
    .await;
    // GET /login is rate-limited per IP.
    for _ in 0..3 {
        assert_eq!(s.get(&format!("{C}/login"), None).await.0, 200);
    }
    let limited = s.get(&format!("{C}/login"), None).await;
    assert_error(&limited, 429, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);
    // Endpoints not marked rate-limited are not.
    for _ in 0..5 {
        assert_eq!(s.get("/_matrix/client/versions", None).await.0, 200);
    }
    s.stop().await;

    // Authenticated requests are limited per user, not per IP: one user's burst leaves
    // another's intact.
    let s = TestServer::start(
        b,
        t,
        &[
            "rate_limit.enabled=true",
            "rate_limit.per_second=0.2",
            "rate_limit.burst=3",
        ],
    )
    .await;
    let (_, alice, _) = s.register("alice", "pw").await;
    let (_, bob, _) = s.register("bob", "pw").await;
    let whoami = format!("{C}/account/whoami");
    for _ in 0..3 {
        assert_eq!(s.get(&whoami, Some(&alice)).await.0, 200);
    }
    assert_error(&s.get(&whoami, Some(&alice)).await, 429, "M_LIMIT_EXCEEDED");
    assert_eq!(s.get(&whoami, Some(&bob)).await.0, 200);
    s.stop().await;

    // Everything that writes or costs is limited too, each kind of work in its own bucket
    // (issue 10): room creation, sending, joining, the public directory (also without a
    // token), and password checks of user-interactive auth.
    let s = TestServer::start(
        b,
        t,
        &[
            "rate_limit.enabled=true",
            "rate_limit.per_second=0.01",
            "rate_limit.burst=3",
        ],
    )
    .await;
    let (_, alice, dev) = s.register("alice", "pw").await;
    let (_, bob, _) = s.register("bob", "pw").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let (st, v) = s
            .post(
                &format!("{C}/createRoom"),
                Some(&alice),
                json!({"preset": "public_chat"}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        rooms.push(v["room_id"].as_str().unwrap().to_owned());
    }
    assert_error(
        &s.post(&format!("{C}/createRoom"), Some(&alice), json!({}))
            .await,
        429,
        "M_LIMIT_EXCEEDED",
    );
    let room = &rooms[0];
    for i in 0..3 {
        let path = format!("{C}/rooms/{room}/send/m.room.message/t{i}");
        assert_eq!(
            s.put(&path, Some(&alice), json!({"body": "x"})).await.0,
            200
        );
    }
    assert_error(
        &s.put(
            &format!("{C}/rooms/{room}/send/m.room.message/t9"),
            Some(&alice),
            json!({"body": "x"}),
        )
        .await,
        429,
        "M_LIMIT_EXCEEDED",
    );
    assert_error(
        &s.put(
            &format!("{C}/rooms/{room}/state/m.room.topic/"),
            Some(&alice),
            json!({"topic": "x"}),
        )
        .await,
        429,
        "M_LIMIT_EXCEEDED",
    );
    for r in &rooms {
        assert_eq!(
            s.post(&format!("{C}/rooms/{r}/join"), Some(&bob), json!({}))
                .await
                .0,
            200
        );
    }
    assert_error(
        &s.post(&format!("{C}/join/{room}"), Some(&bob), json!({}))
            .await,
        429,
        "M_LIMIT_EXCEEDED",
    );
    for _ in 0..3 {
        assert_eq!(s.get(&format!("{C}/publicRooms"), None).await.0, 200);
    }
    assert_error(
        &s.get(&format!("{C}/publicRooms"), None).await,
        429,
        "M_LIMIT_EXCEEDED",
    );
    // Password guesses in user-interactive auth: three, then 429.
    let wrong = json!({"auth": {"type": "m.login.password", "password": "nope",
        "identifier": {"type": "m.id.user", "user": "alice"}}});
    for _ in 0..3 {
        let got = s
            .call(
                "DELETE",
                &format!("{C}/devices/{dev}"),
                Some(&alice),
                Some(wrong.clone()),
            )
            .await;
        assert_eq!(got.0, 401, "{}", got.1);
    }
    assert_error(
        &s.call(
            "DELETE",
            &format!("{C}/devices/{dev}"),
            Some(&alice),
            Some(wrong),
        )
        .await,
        429,
        "M_LIMIT_EXCEEDED",
    );
    s.stop().await;

    // Behind a trusted proxy, the client address comes from X-Forwarded-For; from anyone
    // else the header is ignored.
    for (trusted, separate) in [(true, true), (false, false)] {
        let mut extra = vec![
            "rate_limit.enabled=true",
            "rate_limit.per_second=0.01",
            "rate_limit.burst=2",
        ];
        if trusted {
            extra.push("rate_limit.trusted_proxies=[\"127.0.0.1\"]");
        }
        let s = TestServer::start(b, t, &extra).await;
        let login = |who: &'static str| {
            let s = &s;
            async move {
                let mut resp = s
                    .client
                    .get(format!("{}{C}/login", s.base))
                    .insert_header(("X-Forwarded-For", who))
                    .send()
                    .await
                    .expect("login flows");
                let _ = resp.body().await;
                resp.status().as_u16()
            }
        };
        assert_eq!(login("198.51.100.1").await, 200);
        assert_eq!(login("198.51.100.1").await, 200);
        assert_eq!(login("198.51.100.1").await, 429);
        let other = login("198.51.100.2").await;
        assert_eq!(other == 200, separate, "trusted={trusted}: {other}");
        s.stop().await;
    }
}

async fn metrics_and_profile(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    s.register("alice", "pw").await;
    assert_eq!(s.get("/_matrix/client/versions", None).await.0, 200);
    let mut resp = s
        .client
        .get(format!("{}/metrics", s.metrics_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("myelin_http_requests_total{method=\"GET\",route=\"/_matrix/client/versions\",status=\"200\"}"), "{text}");
    assert!(
        text.contains("route=\"/_matrix/client/v3/register\""),
        "{text}"
    );
    assert!(text.contains("myelin_actor_messages_total{component=\"userapi\",message=\"PerformAccountCreation\",outcome=\"ok\"}"), "{text}");
    let mut resp = s
        .client
        .get(format!(
            "{}/debug/pprof/profile?seconds=1",
            s.metrics_base()
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.body().limit(64 << 20).await.unwrap();
    // A concurrent test may hold the one profiler: then 409, never a fake success.
    assert!(
        status == 200 && !body.is_empty() || status == 409,
        "{status}"
    );
    s.stop().await;
    let off = TestServer::start(b, t, &["metrics.profiling=false"]).await;
    let resp = off
        .client
        .get(format!(
            "{}/debug/pprof/profile?seconds=1",
            off.metrics_base()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    off.stop().await;
}

async fn survives_restart(b: Backend, t: Topology) {
    let mut s = TestServer::start(b, t, &[]).await;
    let (uid, tok, _) = s.register("alice", "pw").await;
    s.put(
        &format!("{C}/profile/{uid}/displayname"),
        Some(&tok),
        json!({"displayname": "Persistent"}),
    )
    .await;
    s.restart().await;
    assert_eq!(
        s.get(&format!("{C}/account/whoami"), Some(&tok)).await.0,
        200
    );
    assert_eq!(s.login("alice", "pw").await.0, 200);
    assert_eq!(
        s.get(&format!("{C}/profile/{uid}/displayname"), None)
            .await
            .1["displayname"],
        "Persistent"
    );
    s.stop().await;
}

scenarios!(
    discovery,
    registration,
    registration_switches,
    login_and_sessions,
    refresh_tokens,
    password_change,
    deactivation,
    third_party_ids,
    devices,
    profiles,
    account_data,
    filters,
    request_errors,
    rate_limits,
    metrics_and_profile,
    survives_restart,
);

/// The internal listener serves only the deployment's own nodes: a message without the shared
/// secret, or with another, is refused before it reaches a component (the review found
/// `PerformDeviceCreation` there minting tokens for anyone).
async fn internal_listener_needs_the_secret(b: Backend) {
    let s = TestServer::start(b, Topology::Bridged, &[]).await;
    let (uid, _, _) = s.register("alice", "pw").await;
    let internal = s
        .userapi_node
        .as_ref()
        .and_then(|n| n.internal_addr)
        .expect("internal listener");
    let url = format!("http://{internal}/_myelin/internal/userapi/PerformDeviceCreation");
    let msg = json!({"localpart": "alice", "device_id": null, "display_name": "x", "ip": null,
        "user_agent": null, "refresh_token": false, "password_fingerprint": null});
    let secret = common::INTERNAL_SECRET.split_once('=').unwrap().1;
    for auth in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(secret.to_owned()),
    ] {
        let mut req = s.client.post(&url);
        if let Some(a) = &auth {
            req = req.insert_header(("Authorization", a.as_str()));
        }
        let mut resp = req.send_json(&msg).await.expect("internal request");
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}: {body}");
        assert_eq!(body["errcode"], "M_UNAUTHORIZED");
    }
    // With the secret it works (as the bridge itself shows in every bridged test).
    let mut resp = s
        .client
        .post(&url)
        .insert_header(("Authorization", format!("Bearer {secret}")))
        .send_json(&msg)
        .await
        .expect("internal request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["Ok"]["access_token"].is_string(), "{body}");
    let _ = uid;
    s.stop().await;
}

#[actix_web::test]
async fn internal_listener_needs_the_secret_sqlite() {
    internal_listener_needs_the_secret(Backend::Sqlite).await
}

#[actix_web::test]
async fn internal_listener_needs_the_secret_postgres() {
    internal_listener_needs_the_secret(Backend::Postgres).await
}
