//! The remote scenarios, between the server of `--url` and a second one federating with it
//! (`--remote-url`), measured through the two client APIs only: `remote_join` (how long a
//! user of the remote server takes to join a room of user 0, through the local server's
//! name) and `to_remote_sync` / `from_remote_sync` (send_to_sync's latency between a user of
//! each server, both ways).

use crate::args::Scenario;
use crate::matrix;
use crate::report::{Errors, Report};
use crate::run::{elapsed_ms, Run};
use crate::sync::{latency_rounds, Side};
use serde_json::json;
use std::time::Instant;

/// remote_join joins at most this many rooms (each is a federated join, not a cheap call).
const MAX_JOINS: usize = 20;

/// The local server's name, for `?server_name=`: given with `--server-name` or read from
/// user 0's ID.
fn local_name(run: &Run) -> Option<String> {
    run.server_name.clone().or_else(|| {
        run.users
            .first()?
            .as_ref()?
            .server_name()
            .map(str::to_owned)
    })
}

/// User 0 creates a public room; the remote user joins it through the local server.
/// Returns the room ID and the join's duration in ms.
async fn create_and_join_remotely(run: &Run, n: usize) -> Result<(String, f64), String> {
    let (Some(Some(creator)), Some(remote), Some(remote_http)) =
        (run.users.first(), &run.remote_user, &run.remote_http)
    else {
        return Err("user 0 or the remote user is missing".into());
    };
    let via = local_name(run).ok_or("the local server name is unknown")?;
    let room = matrix::create_room(
        &run.http,
        &creator.token,
        json!({"preset": "public_chat", "name": format!("myelin-load remote {} {n}", run.nonce)}),
    )
    .await
    .map_err(|e| format!("createRoom: {}: {}", e.kind, e.detail))?;
    let t = Instant::now();
    matrix::join_via(remote_http, &remote.token, &room, &via)
        .await
        .map_err(|e| format!("remote join: {}: {}", e.kind, e.detail))?;
    Ok((room, elapsed_ms(t)))
}

/// Makes sure the remote user is in a room of user 0 (joined unmeasured if remote_join did
/// not run).
pub async fn need_remote_room(run: &mut Run, scenario: &str) -> Result<(), Report> {
    if run.remote_room.is_some() {
        return Ok(());
    }
    match create_and_join_remotely(run, 0).await {
        Ok((room, _)) => {
            run.remote_room = Some(room);
            Ok(())
        }
        Err(e) => {
            eprintln!("myelin-load: {scenario}: {e}");
            let mut errors = Errors::default();
            errors.add("remote_join_failed");
            Err(Report::skipped(
                scenario,
                "the remote user could not join a room of user 0",
                errors,
            ))
        }
    }
}

/// The `remote_join` scenario: `--rounds` (at most 20) rooms created by user 0, each joined
/// by the remote user through the local server; the latencies are the joins' (a federated
/// join: make_join, send_join, the room's state checked and stored).
pub async fn remote_join(run: &mut Run) -> Report {
    let label = Scenario::RemoteJoin.name();
    let mut report = Report::new(label);
    let joins = run.args.rounds.clamp(1, MAX_JOINS);
    let start = Instant::now();
    for n in 0..joins {
        match create_and_join_remotely(run, n).await {
            Ok((room, ms)) => {
                report.count += 1;
                report.latencies_ms.push(ms);
                run.remote_room.get_or_insert(room);
            }
            Err(e) => {
                if report.errors.0.is_empty() {
                    eprintln!("myelin-load: {label}: first failure: {e}");
                }
                report.errors.add("remote_join_failed");
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.extra("joins", joins);
    report
}

/// The sides of the remote latency scenarios: (local user 0, remote user), if both exist.
fn sides(run: &Run) -> Option<(Side<'_>, Side<'_>, &str)> {
    let local = Side {
        http: &run.http,
        user: run.users.first()?.as_ref()?,
    };
    let remote = Side {
        http: run.remote_http.as_ref()?,
        user: run.remote_user.as_ref()?,
    };
    Some((local, remote, run.remote_room.as_deref()?))
}

/// The `to_remote_sync` scenario: user 0 sends, the remote user's `/sync` sees it.
pub async fn to_remote_sync(run: &Run) -> Report {
    let label = Scenario::ToRemoteSync.name();
    match sides(run) {
        Some((local, remote, room)) => latency_rounds(run, label, local, room, remote).await,
        None => Report::skipped(label, "no remote room", Errors::default()),
    }
}

/// The `from_remote_sync` scenario: the remote user sends, user 0's `/sync` sees it.
pub async fn from_remote_sync(run: &Run) -> Report {
    let label = Scenario::FromRemoteSync.name();
    match sides(run) {
        Some((local, remote, room)) => latency_rounds(run, label, remote, room, local).await,
        None => Report::skipped(label, "no remote room", Errors::default()),
    }
}
