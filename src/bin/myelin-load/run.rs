//! The state of a run (the client, the registered users, the test room) and the first three
//! scenarios: `register`, `create_join` and `send`. A scenario whose prerequisites were not
//! measured by an earlier scenario sets them up first, unmeasured ([`Run::prepare`]).

use crate::args::{Args, Scenario};
use crate::http::{Http, ReqError};
use crate::matrix::{self, Session};
use crate::progress::Progress;
use crate::report::{Errors, Report};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

/// The test room of `create_join`, `send` and `send_to_sync`.
#[derive(Debug, Clone)]
pub struct Room {
    /// Its ID.
    pub id: String,
    /// Indexes of the users who are members, creator (0) first.
    pub members: Vec<usize>,
}

/// Everything a run shares between scenarios.
pub struct Run {
    /// The flags.
    pub args: Args,
    /// The HTTP client.
    pub http: Http,
    /// The password of every user of the run.
    pub password: String,
    /// A random tag of this run, in transaction IDs and message bodies.
    pub nonce: String,
    /// User `i`'s session, or `None` when it could not be registered or logged in.
    pub users: Vec<Option<Session>>,
    /// Whether registration was attempted (measured or not).
    users_attempted: bool,
    /// The test room, once created.
    pub room: Option<Room>,
    /// Whether creating the test room was attempted.
    room_attempted: bool,
    /// The server name, given or discovered.
    pub server_name: Option<String>,
    /// The set-up of initial_sync, once done (see `sync.rs`).
    pub initial_sync_setup: Option<crate::sync::InitialSyncSetup>,
    /// The client of `--remote-url`, if given.
    pub remote_http: Option<Http>,
    /// The remote scenarios' user on the remote server, once registered.
    pub remote_user: Option<Session>,
    /// Whether registering the remote user was attempted.
    remote_user_attempted: bool,
    /// A room of user 0 the remote user has joined, once joined.
    pub remote_room: Option<String>,
    /// Error kinds already explained on stderr (the first error of each kind is).
    explained: RefCell<BTreeSet<String>>,
}

impl Run {
    /// A run with these flags; nothing is sent yet.
    pub fn new(args: Args, nonce: String) -> Run {
        let http = Http::new(&args.url, Duration::from_secs(args.timeout_secs));
        let remote_http = args
            .remote_url
            .as_deref()
            .map(|url| Http::new(url, Duration::from_secs(args.timeout_secs)));
        Run {
            password: format!("myelin-load-{}", args.prefix),
            users: vec![None; args.users],
            server_name: args.server_name.clone(),
            args,
            http,
            nonce,
            users_attempted: false,
            room: None,
            room_attempted: false,
            initial_sync_setup: None,
            remote_http,
            remote_user: None,
            remote_user_attempted: false,
            remote_room: None,
            explained: RefCell::new(BTreeSet::new()),
        }
    }

    /// The localpart of user `i`.
    pub fn localpart(&self, i: usize) -> String {
        format!("{}-{i}", self.args.prefix)
    }

    /// Counts `e` in `errors`, and explains the first error of each kind on stderr.
    pub fn count_error(&self, scenario: &str, errors: &mut Errors, e: &ReqError) {
        errors.add(&e.kind);
        if self.explained.borrow_mut().insert(e.kind.clone()) {
            eprintln!(
                "myelin-load: {scenario}: first {} error: {}",
                e.kind, e.detail
            );
        }
    }

    /// Sets up what `scenario` needs and an earlier scenario did not provide, unmeasured.
    /// An error is the report of a scenario that cannot run.
    pub async fn prepare(&mut self, scenario: Scenario) -> Result<(), Report> {
        let name = scenario.name();
        match scenario {
            Scenario::Register => Ok(()),
            Scenario::CreateJoin | Scenario::IdleSync => self.need_users(name, &[0]).await,
            Scenario::Send => self.need_room(name).await,
            Scenario::SendToSync => {
                self.need_users(name, &[0, 1]).await?;
                self.need_room(name).await?;
                self.need_member(name, 1).await
            }
            Scenario::InitialSync => crate::sync::prepare_initial_sync(self).await,
            Scenario::RemoteJoin => {
                self.need_users(name, &[0]).await?;
                self.need_remote_user(name).await
            }
            Scenario::ToRemoteSync | Scenario::FromRemoteSync => {
                self.need_users(name, &[0]).await?;
                self.need_remote_user(name).await?;
                crate::remote::need_remote_room(self, name).await
            }
        }
    }

    /// Registers the remote scenarios' user on the remote server unless done already.
    async fn need_remote_user(&mut self, scenario: &str) -> Result<(), Report> {
        let mut errors = Errors::default();
        if !self.remote_user_attempted {
            self.remote_user_attempted = true;
            let Some(http) = &self.remote_http else {
                return Err(Report::skipped(scenario, "no --remote-url", errors));
            };
            let localpart = format!("{}-remote", self.args.prefix);
            match matrix::register(http, &localpart, &self.password).await {
                Ok(user) => self.remote_user = Some(user),
                Err(e) => self.count_error(scenario, &mut errors, &e),
            }
        }
        match self.remote_user {
            Some(_) => Ok(()),
            None => Err(Report::skipped(
                scenario,
                "the remote user could not be registered",
                errors,
            )),
        }
    }

    /// Registers the users unless done already; fails when one of `required` is missing.
    async fn need_users(&mut self, scenario: &str, required: &[usize]) -> Result<(), Report> {
        let mut errors = Errors::default();
        if !self.users_attempted {
            errors = self.register_all("setup: register").await.errors;
        }
        for &i in required {
            if self.users.get(i).is_none_or(Option::is_none) {
                return Err(Report::skipped(
                    scenario,
                    format!("user {i} could not be registered"),
                    errors,
                ));
            }
        }
        Ok(())
    }

    /// Creates and joins the test room unless done already.
    async fn need_room(&mut self, scenario: &str) -> Result<(), Report> {
        self.need_users(scenario, &[0]).await?;
        let mut errors = Errors::default();
        if !self.room_attempted {
            errors = self.create_and_join("setup: create_join").await.errors;
        }
        match &self.room {
            Some(_) => Ok(()),
            None => Err(Report::skipped(
                scenario,
                "the test room could not be created",
                errors,
            )),
        }
    }

    /// Makes user `i` a member of the test room.
    async fn need_member(&mut self, scenario: &str, i: usize) -> Result<(), Report> {
        let (Some(room), Some(Some(user))) = (&self.room, self.users.get(i)) else {
            return Err(Report::skipped(scenario, "no test room", Errors::default()));
        };
        if room.members.contains(&i) {
            return Ok(());
        }
        match matrix::join(&self.http, &user.token, &room.id).await {
            Ok(()) => {
                if let Some(room) = &mut self.room {
                    room.members.push(i);
                }
                Ok(())
            }
            Err(e) => {
                let mut errors = Errors::default();
                self.count_error(scenario, &mut errors, &e);
                Err(Report::skipped(
                    scenario,
                    format!("user {i} could not join the test room"),
                    errors,
                ))
            }
        }
    }

    /// The `register` scenario.
    pub async fn register(&mut self) -> Report {
        self.register_all(Scenario::Register.name()).await
    }

    /// Registers every user, `--concurrency` at a time, and reports it as `label`. A user
    /// who exists already (a rerun with the same `--prefix`) counts as an error of its kind
    /// (`M_USER_IN_USE`) and is then logged in, unmeasured, so later scenarios can use it.
    async fn register_all(&mut self, label: &str) -> Report {
        self.users_attempted = true;
        let n = self.args.users;
        let progress = Progress::new(label, n as u64);
        let start = Instant::now();
        let this = &*self;
        let outcomes = pool(self.args.concurrency, n, |i| {
            let progress = &progress;
            async move {
                let localpart = this.localpart(i);
                let t = Instant::now();
                let result = matrix::register(&this.http, &localpart, &this.password).await;
                let ms = elapsed_ms(t);
                let outcome = match result {
                    Ok(session) => (Ok(ms), Some(session)),
                    Err(e) if e.kind == "M_USER_IN_USE" => {
                        let session = matrix::login(&this.http, &localpart, &this.password)
                            .await
                            .ok();
                        (Err(e), session)
                    }
                    Err(e) => (Err(e), None),
                };
                progress.tick(outcome.0.is_ok());
                outcome
            }
        })
        .await;
        let mut report = Report::new(label);
        report.seconds = start.elapsed().as_secs_f64();
        for (i, (result, session)) in outcomes.into_iter().enumerate() {
            match result {
                Ok(ms) => {
                    report.count += 1;
                    report.latencies_ms.push(ms);
                }
                Err(e) => self.count_error(label, &mut report.errors, &e),
            }
            self.users[i] = session;
        }
        let discovered = self
            .users
            .iter()
            .flatten()
            .find_map(|s| s.server_name().map(str::to_owned));
        match (&self.server_name, discovered) {
            (Some(given), Some(found)) if *given != found => eprintln!(
                "myelin-load: --server-name is {given:?} but the server issued user IDs on {found:?}"
            ),
            (None, found) => self.server_name = found,
            _ => {}
        }
        if let Some(name) = &self.server_name {
            report.extra("server_name", name.as_str());
        }
        report
    }

    /// The `create_join` scenario.
    pub async fn create_join(&mut self) -> Report {
        self.create_and_join(Scenario::CreateJoin.name()).await
    }

    /// User 0 creates a public room and users 1 to `--joiners - 1` join it, `--concurrency`
    /// at a time. Counts and latencies are of the joins; the creation is the `create_ms`
    /// extra. Users that could not be registered are left out (`users_missing`).
    async fn create_and_join(&mut self, label: &str) -> Report {
        self.room_attempted = true;
        let mut report = Report::new(label);
        let Some(Some(creator)) = self.users.first() else {
            return Report::skipped(label, "user 0 could not be registered", Errors::default());
        };
        let start = Instant::now();
        let created = matrix::create_room(
            &self.http,
            &creator.token,
            json!({"preset": "public_chat", "name": format!("myelin-load {}", self.nonce)}),
        )
        .await;
        let create_ms = elapsed_ms(start);
        let room_id = match created {
            Ok(id) => id,
            Err(e) => {
                self.count_error(label, &mut report.errors, &e);
                report.seconds = start.elapsed().as_secs_f64();
                report.skipped = Some("createRoom failed".into());
                return report;
            }
        };
        let joiners: Vec<(usize, &Session)> = (1..self.args.joiners)
            .filter_map(|i| Some((i, self.users[i].as_ref()?)))
            .collect();
        let missing = self.args.joiners - 1 - joiners.len();
        let progress = Progress::new(label, joiners.len() as u64);
        let (http, room) = (&self.http, room_id.as_str());
        let outcomes = pool(self.args.concurrency, joiners.len(), |k| {
            let (i, user) = joiners[k];
            let progress = &progress;
            async move {
                let t = Instant::now();
                let result = matrix::join(http, &user.token, room).await;
                progress.tick(result.is_ok());
                (i, result.map(|()| elapsed_ms(t)))
            }
        })
        .await;
        report.seconds = start.elapsed().as_secs_f64();
        let mut members = vec![0];
        for (i, result) in outcomes {
            match result {
                Ok(ms) => {
                    report.count += 1;
                    report.latencies_ms.push(ms);
                    members.push(i);
                }
                Err(e) => self.count_error(label, &mut report.errors, &e),
            }
        }
        report.extra("create_ms", crate::report::round(create_ms, 3));
        report.extra("members", members.len());
        if missing > 0 {
            report.extra("users_missing", missing);
        }
        report.extra("room_id", room_id.as_str());
        self.room = Some(Room {
            id: room_id,
            members,
        });
        report
    }

    /// The `send` scenario: `--messages` messages into the test room, `--concurrency` in
    /// flight, message `i` from member `i mod members`, each member with its own token.
    pub async fn send(&self) -> Report {
        let label = Scenario::Send.name();
        let Some(room) = &self.room else {
            return Report::skipped(label, "no test room", Errors::default());
        };
        let senders: Vec<&Session> = room
            .members
            .iter()
            .filter_map(|&i| self.users[i].as_ref())
            .collect();
        if senders.is_empty() {
            return Report::skipped(label, "the test room has no members", Errors::default());
        }
        let n = self.args.messages;
        let progress = Progress::new(label, n as u64);
        let start = Instant::now();
        let outcomes = pool(self.args.concurrency, n, |i| {
            let sender = senders[i % senders.len()];
            let progress = &progress;
            async move {
                let txn = format!("{}-send-{i}", self.nonce);
                let body = format!("myelin-load message {i}");
                let t = Instant::now();
                let result = matrix::send_text(&self.http, &sender.token, &room.id, &txn, &body)
                    .await
                    .map(|_event_id| elapsed_ms(t));
                progress.tick(result.is_ok());
                result
            }
        })
        .await;
        let mut report = Report::new(label);
        report.seconds = start.elapsed().as_secs_f64();
        for result in outcomes {
            match result {
                Ok(ms) => {
                    report.count += 1;
                    report.latencies_ms.push(ms);
                }
                Err(e) => self.count_error(label, &mut report.errors, &e),
            }
        }
        report.extra("senders", senders.len());
        report.extra("concurrency", self.args.concurrency);
        report
    }
}

/// Runs `f(0)`, …, `f(n - 1)` with at most `concurrency` in flight, on the current task, and
/// returns their outputs in index order.
pub async fn pool<T, F, Fut>(concurrency: usize, n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T>,
{
    let mut outputs: Vec<(usize, T)> = stream::iter(0..n)
        .map(|i| {
            let fut = f(i);
            async move { (i, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    outputs.sort_by_key(|(i, _)| *i);
    outputs.into_iter().map(|(_, t)| t).collect()
}

/// Milliseconds since `t`.
pub fn elapsed_ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn pool_keeps_order_and_bounds_concurrency() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let in_flight = Cell::new(0usize);
        let peak = Cell::new(0usize);
        let out = rt.block_on(pool(3, 10, |i| {
            let (in_flight, peak) = (&in_flight, &peak);
            async move {
                in_flight.set(in_flight.get() + 1);
                peak.set(peak.get().max(in_flight.get()));
                tokio::time::sleep(Duration::from_millis((10 - i as u64) * 2)).await;
                in_flight.set(in_flight.get() - 1);
                i * 2
            }
        }));
        assert_eq!(out, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.get(), 3);
    }
}
