//! The `/sync` scenarios: `send_to_sync` (how long a message takes to reach another user's
//! long poll), `initial_sync` (a full sync of a user in many rooms) and `idle_sync` (how many
//! idle long polls the server holds, and what they cost it).

use crate::args::Scenario;
use crate::http::{Http, ReqError};
use crate::matrix::{self, Session, SMALL_FILTER};
use crate::proc;
use crate::progress::Progress;
use crate::report::{round, Errors, Report};
use crate::run::{elapsed_ms, pool, Run};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::pin;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The server-side timeout of send_to_sync's long polls, in ms.
const POLL_MS: u64 = 30_000;
/// How long one send_to_sync round waits for its message to show up.
const ROUND_LIMIT: Duration = Duration::from_secs(10);
/// How long a long poll must have been under way before a round sends its message.
const POLL_HEAD_START: Duration = Duration::from_millis(5);
/// The receiver gives up after this many failed polls in a row.
const MAX_POLL_FAILURES: u32 = 5;
/// Messages put into each room of the initial_sync user.
const MESSAGES_PER_ROOM: usize = 5;
/// initial_sync measures at most this many syncs …
const INITIAL_SYNCS: usize = 20;
/// … and starts none after this long.
const INITIAL_SYNC_BUDGET: Duration = Duration::from_secs(60);
/// How long idle_sync holds its long polls.
const IDLE_HOLD: Duration = Duration::from_secs(10);
/// The server-side timeout of idle_sync's long polls, in ms (longer than the hold).
const IDLE_POLL_MS: u64 = 60_000;
/// File descriptors this process needs besides one per idle client.
const FD_RESERVE: u64 = 64;

/// A request timeout above a long poll's server-side timeout.
fn long_poll_timeout(run: &Run, poll_ms: u64) -> Duration {
    Duration::from_millis(poll_ms + 10_000).max(Duration::from_secs(run.args.timeout_secs))
}

/// What the receiver of a latency measurement has seen, shared with the sending side.
struct Inbox {
    /// When each marked message body was parsed out of a sync response.
    arrivals: RefCell<HashMap<String, Instant>>,
    /// When the outstanding long poll was started; `None` between polls.
    polling_since: Cell<Option<Instant>>,
    /// Woken after every sync response, and when the receiver stops.
    notify: Notify,
    /// Whether the receiver still polls.
    alive: Cell<bool>,
    /// The receiver's failed polls.
    errors: RefCell<Errors>,
}

/// One side of a latency measurement: a user and the server it talks to.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub http: &'a Http,
    pub user: &'a Session,
}

/// The `send_to_sync` scenario: [`latency_rounds`] from user 0 to user 1 in the test room.
pub async fn send_to_sync(run: &Run) -> Report {
    let label = Scenario::SendToSync.name();
    let (Some(room), Some(Some(sender)), Some(Some(receiver))) =
        (&run.room, run.users.first(), run.users.get(1))
    else {
        return Report::skipped(
            label,
            "users 0 and 1 or the test room are missing",
            Errors::default(),
        );
    };
    let sender = Side {
        http: &run.http,
        user: sender,
    };
    let receiver = Side {
        http: &run.http,
        user: receiver,
    };
    latency_rounds(run, label, sender, &room.id, receiver).await
}

/// `--rounds` rounds of: the receiver keeps a long poll outstanding (filtered to one
/// timeline event per room); each round waits until the poll has been under way for 5 ms,
/// then the sender sends a message with a unique body. The latency runs from starting the send
/// to parsing the sync response that holds the body; a sync without it is followed by
/// another from its `next_batch`, for at most 10 s per round. Sender and receiver may be on
/// different servers (the remote scenarios).
pub async fn latency_rounds(
    run: &Run,
    label: &str,
    sender: Side<'_>,
    room_id: &str,
    receiver: Side<'_>,
) -> Report {
    let mut report = Report::new(label);
    let first = matrix::sync(
        receiver.http,
        &receiver.user.token,
        None,
        0,
        Some(SMALL_FILTER),
        None,
    )
    .await;
    let since = match first {
        Ok(reply) => reply.next_batch,
        Err(e) => {
            run.count_error(label, &mut report.errors, &e);
            report.skipped = Some("the receiver's initial sync failed".into());
            return report;
        }
    };

    let marker = format!("{}-{label}-", run.nonce);
    let inbox = Inbox {
        arrivals: RefCell::new(HashMap::new()),
        polling_since: Cell::new(None),
        notify: Notify::new(),
        alive: Cell::new(true),
        errors: RefCell::new(Errors::default()),
    };
    let rounds = run.args.rounds;
    // Every round's limit, and a minute to spare.
    let receive_limit = ROUND_LIMIT * u32::try_from(rounds).unwrap_or(u32::MAX).saturating_add(6);
    let receiving = pin!(receive(
        run,
        label,
        receiver,
        since,
        &marker,
        &inbox,
        receive_limit
    ));
    let mut sending = pin!(send_rounds(run, label, sender, room_id, &marker, &inbox));
    let start = Instant::now();
    // The receiver runs until the rounds are done, then its outstanding poll is dropped.
    let (latencies, round_errors) = tokio::select! {
        out = &mut sending => out,
        () = receiving => sending.await,
    };
    report.seconds = start.elapsed().as_secs_f64();
    report.count = latencies.len() as u64;
    report.latencies_ms = latencies;
    report.errors.merge(&round_errors);
    report.errors.merge(&inbox.errors.borrow());
    report.extra("rounds", rounds);
    report
}

/// The receiving side of send_to_sync: long polls from `since` until dropped, `limit` has
/// passed, or [`MAX_POLL_FAILURES`] polls in a row failed.
async fn receive(
    run: &Run,
    label: &str,
    receiver: Side<'_>,
    mut since: String,
    marker: &str,
    inbox: &Inbox,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let request_timeout = long_poll_timeout(run, POLL_MS);
    let mut failures = 0;
    while Instant::now() < deadline && failures < MAX_POLL_FAILURES {
        inbox.polling_since.set(Some(Instant::now()));
        let result = matrix::sync(
            receiver.http,
            &receiver.user.token,
            Some(&since),
            POLL_MS,
            Some(SMALL_FILTER),
            Some(request_timeout),
        )
        .await;
        let now = Instant::now();
        inbox.polling_since.set(None);
        match result {
            Ok(reply) => {
                failures = 0;
                let mut arrivals = inbox.arrivals.borrow_mut();
                for body in matrix::timeline_bodies(&reply.json) {
                    if body.starts_with(marker) {
                        arrivals.entry(body.to_owned()).or_insert(now);
                    }
                }
                since = reply.next_batch;
            }
            Err(e) => {
                failures += 1;
                run.count_error(label, &mut inbox.errors.borrow_mut(), &e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        inbox.notify.notify_waiters();
    }
    inbox.alive.set(false);
    inbox.notify.notify_waiters();
}

/// The sending side of send_to_sync: the rounds, returning the latency of each round that
/// saw its message, and the errors of the others.
async fn send_rounds(
    run: &Run,
    label: &str,
    sender: Side<'_>,
    room_id: &str,
    marker: &str,
    inbox: &Inbox,
) -> (Vec<f64>, Errors) {
    let progress = Progress::new(label, run.args.rounds as u64);
    let mut latencies = Vec::new();
    let mut errors = Errors::default();
    for round in 0..run.args.rounds {
        if !inbox.alive.get() {
            errors.add("receiver_stopped");
            break;
        }
        // Wait (at most 2 s) until the receiver's poll has had a head start.
        let wait_limit = Instant::now() + Duration::from_secs(2);
        let head_start = || {
            inbox
                .polling_since
                .get()
                .is_some_and(|t| t.elapsed() >= POLL_HEAD_START)
        };
        while Instant::now() < wait_limit && !head_start() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let body = format!("{marker}{round}");
        let txn = format!("{}-{label}-{round}", run.nonce);
        let start = Instant::now();
        if let Err(e) =
            matrix::send_text(sender.http, &sender.user.token, room_id, &txn, &body).await
        {
            run.count_error(label, &mut errors, &e);
            progress.tick(false);
            continue;
        }
        let deadline = tokio::time::Instant::from_std(start + ROUND_LIMIT);
        let seen = loop {
            // Created before the check, so a response parsed in between still wakes it.
            let notified = inbox.notify.notified();
            if let Some(at) = inbox.arrivals.borrow_mut().remove(&body) {
                break Ok(at.duration_since(start).as_secs_f64() * 1000.0);
            }
            if !inbox.alive.get() {
                break Err("receiver_stopped");
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break Err("round_timeout");
            }
        };
        match seen {
            Ok(ms) => latencies.push(ms),
            Err(kind) => errors.add(kind),
        }
        progress.tick(seen.is_ok());
    }
    (latencies, errors)
}

/// The initial_sync user and what setting it up cost.
pub struct InitialSyncSetup {
    /// The user, in all the rooms.
    pub user: Session,
    /// Rooms created with their messages.
    pub rooms: usize,
    /// Failures while setting up.
    pub errors: Errors,
    /// How long the set-up took.
    pub seconds: f64,
}

/// Registers the initial_sync user and creates its `--rooms-for-initial-sync` rooms, each
/// with [`MESSAGES_PER_ROOM`] messages, `--concurrency` rooms at a time.
pub async fn prepare_initial_sync(run: &mut Run) -> Result<(), Report> {
    let label = Scenario::InitialSync.name();
    let mut errors = Errors::default();
    let start = Instant::now();
    let localpart = format!("{}-initial", run.args.prefix);
    let user = match matrix::register(&run.http, &localpart, &run.password).await {
        Ok(user) => user,
        Err(e) => {
            run.count_error(label, &mut errors, &e);
            return Err(Report::skipped(
                label,
                "the initial_sync user could not be registered",
                errors,
            ));
        }
    };
    let n = run.args.rooms_for_initial_sync;
    let progress = Progress::new("setup: initial_sync rooms", n as u64);
    let this = &*run;
    let outcomes = pool(run.args.concurrency, n, |r| {
        let (user, progress) = (&user, &progress);
        async move {
            let result = fill_room(this, &user.token, r).await;
            progress.tick(result.is_ok());
            result
        }
    })
    .await;
    let mut rooms = 0;
    for result in outcomes {
        match result {
            Ok(()) => rooms += 1,
            Err(e) => run.count_error(label, &mut errors, &e),
        }
    }
    run.initial_sync_setup = Some(InitialSyncSetup {
        user,
        rooms,
        errors,
        seconds: start.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// Creates room number `r` of the initial_sync user and sends its messages.
async fn fill_room(run: &Run, token: &str, r: usize) -> Result<(), ReqError> {
    let room_id = matrix::create_room(
        &run.http,
        token,
        json!({"preset": "private_chat", "name": format!("myelin-load initial {r}")}),
    )
    .await?;
    for m in 0..MESSAGES_PER_ROOM {
        let txn = format!("{}-init-{r}-{m}", run.nonce);
        let body = format!("initial sync room {r} message {m}");
        matrix::send_text(&run.http, token, &room_id, &txn, &body).await?;
    }
    Ok(())
}

/// The `initial_sync` scenario: up to 20 full syncs (no `since`, `timeout=0`, no filter) of
/// the set-up user, one at a time, none started after 60 s.
pub async fn initial_sync(run: &Run) -> Report {
    let label = Scenario::InitialSync.name();
    let Some(setup) = &run.initial_sync_setup else {
        return Report::skipped(label, "not set up", Errors::default());
    };
    let mut report = Report::new(label);
    let progress = Progress::new(label, INITIAL_SYNCS as u64);
    let start = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..INITIAL_SYNCS {
        if start.elapsed() >= INITIAL_SYNC_BUDGET {
            break;
        }
        let t = Instant::now();
        match matrix::sync(&run.http, &setup.user.token, None, 0, None, None).await {
            Ok(reply) => {
                report.count += 1;
                report.latencies_ms.push(elapsed_ms(t));
                bytes.push(reply.bytes);
                progress.tick(true);
            }
            Err(e) => {
                run.count_error(label, &mut report.errors, &e);
                progress.tick(false);
            }
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.extra("rooms", setup.rooms);
    // The largest body; null when no sync succeeded.
    report.extra("response_bytes", bytes.iter().copied().max());
    report.extra("setup_seconds", round(setup.seconds, 3));
    report.extra("setup_errors", setup.errors.to_json());
    report
}

/// What became of one idle long poll.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PollState {
    Pending,
    Returned,
    Failed,
}

/// The `idle_sync` scenario. Logs in `--idle-clients` devices (spread over the registered
/// users), syncs each once (`timeout=0`, small filter) for a token, then holds one long poll
/// (`timeout=60000`) per device for 10 s. `count` is the polls still pending after that,
/// with no error; `latency_ms` is of the initial syncs. With `--server-pid`, the server's
/// RSS before the polls and while they are held gives `per_client_kib`.
pub async fn idle_sync(run: &Run) -> Report {
    let label = Scenario::IdleSync.name();
    let n = run.args.idle_clients;
    if let Some(limit) = proc::open_files_limit() {
        if n as u64 + FD_RESERVE > limit {
            eprintln!(
                "myelin-load: idle_sync needs about {} open files but the limit is {limit}; \
                 raise it first, e.g. `ulimit -n {}`",
                n as u64 + FD_RESERVE,
                n as u64 + 1024
            );
            return Report::skipped(
                label,
                format!("open-file limit {limit} too low"),
                Errors::default(),
            );
        }
    }
    let users: Vec<String> = (0..run.users.len())
        .filter(|&i| run.users[i].is_some())
        .map(|i| run.localpart(i))
        .collect();
    if users.is_empty() {
        return Report::skipped(label, "no registered users", Errors::default());
    }
    let mut report = Report::new(label);
    let start = Instant::now();

    // Devices.
    let progress = Progress::new("idle_sync: login", n as u64);
    let logins = pool(run.args.concurrency, n, |i| {
        let (user, progress) = (&users[i % users.len()], &progress);
        async move {
            let result = matrix::login(&run.http, user, &run.password).await;
            progress.tick(result.is_ok());
            result
        }
    })
    .await;
    drop(progress);
    let mut sessions = Vec::new();
    for result in logins {
        match result {
            Ok(s) => sessions.push(s),
            Err(e) => run.count_error(label, &mut report.errors, &e),
        }
    }

    // One initial sync each, for a token.
    let progress = Progress::new("idle_sync: initial sync", sessions.len() as u64);
    let syncs = pool(run.args.concurrency, sessions.len(), |i| {
        let (session, progress) = (&sessions[i], &progress);
        async move {
            let t = Instant::now();
            let result =
                matrix::sync(&run.http, &session.token, None, 0, Some(SMALL_FILTER), None).await;
            progress.tick(result.is_ok());
            result.map(|reply| (session, reply.next_batch, elapsed_ms(t)))
        }
    })
    .await;
    drop(progress);
    let mut pollers = Vec::new();
    for result in syncs {
        match result {
            Ok((session, since, ms)) => {
                report.latencies_ms.push(ms);
                pollers.push((session, since));
            }
            Err(e) => run.count_error(label, &mut report.errors, &e),
        }
    }

    // Everyone's first sync marks them online, which is news to those sharing a room: catch
    // every token up past all of that (unmeasured), so the idle polls below wait for nothing.
    let progress = Progress::new("idle_sync: catching up", pollers.len() as u64);
    let caught_up = pool(run.args.concurrency, pollers.len(), |i| {
        let ((session, since), progress) = (&pollers[i], &progress);
        async move {
            let result = matrix::sync(
                &run.http,
                &session.token,
                Some(since),
                0,
                Some(SMALL_FILTER),
                None,
            )
            .await;
            progress.tick(result.is_ok());
            result.map(|reply| reply.next_batch)
        }
    })
    .await;
    drop(progress);
    for ((_, since), result) in pollers.iter_mut().zip(caught_up) {
        match result {
            Ok(next) => *since = next,
            Err(e) => run.count_error(label, &mut report.errors, &e),
        }
    }

    // The long polls, all at once, held for IDLE_HOLD.
    let pid = run.args.server_pid.map(|p| p.to_string());
    let before = pid.as_deref().and_then(proc::sample);
    let states: Vec<Cell<PollState>> = pollers
        .iter()
        .map(|_| Cell::new(PollState::Pending))
        .collect();
    let poll_errors = RefCell::new(Errors::default());
    let request_timeout = long_poll_timeout(run, IDLE_POLL_MS);
    let polls = pollers
        .iter()
        .zip(&states)
        .map(|((session, since), state)| {
            let poll_errors = &poll_errors;
            async move {
                let result = matrix::sync(
                    &run.http,
                    &session.token,
                    Some(since),
                    IDLE_POLL_MS,
                    Some(SMALL_FILTER),
                    Some(request_timeout),
                )
                .await;
                match result {
                    Ok(_) => state.set(PollState::Returned),
                    Err(e) => {
                        run.count_error(label, &mut poll_errors.borrow_mut(), &e);
                        state.set(PollState::Failed);
                    }
                }
            }
        });
    let mut all = Box::pin(futures_util::future::join_all(polls));
    tokio::select! {
        _ = &mut all => {}
        () = tokio::time::sleep(IDLE_HOLD) => {}
    }
    // Sampled while the polls are still held; they end when `all` is dropped.
    let during = pid.as_deref().and_then(proc::sample);
    let count = |want: PollState| states.iter().filter(|s| s.get() == want).count();
    let (held, returned) = (count(PollState::Pending), count(PollState::Returned));
    drop(all);

    report.seconds = start.elapsed().as_secs_f64();
    report.count = held as u64;
    report.errors.merge(&poll_errors.borrow());
    report.extra("clients", n);
    report.extra("polls_started", pollers.len());
    report.extra("held", held);
    report.extra("returned_early", returned);
    report.extra("hold_seconds", IDLE_HOLD.as_secs());
    if let (Some(b), Some(d)) = (before, during) {
        let grown = d.rss_kib as i64 - b.rss_kib as i64;
        report.extra("rss_kib_before_polls", b.rss_kib);
        report.extra("rss_kib_with_polls", d.rss_kib);
        if held > 0 {
            report.extra("per_client_kib", round(grown as f64 / held as f64, 1));
        }
    }
    report
}
