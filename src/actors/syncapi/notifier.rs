//! The notifier: wakes the `/sync` requests waiting for exactly the users a new position
//! concerns. It keeps who is joined to which room in memory (loaded at start, then kept by
//! the membership changes it is told about) and, per user, the requests waiting.
//!
//! A request first [`Listen`]s (getting the positions it may read up to and a receiver), then
//! reads the database, then waits on the receiver: a change committed after the `Listen`
//! wakes it, one committed before is within the positions it read. Nothing polls.

use super::token::{Stream, StreamPositions};
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use tokio::sync::{oneshot, watch};

/// The notifier actor (one per syncapi).
pub struct Notifier {
    positions: StreamPositions,
    /// The positions, for readers that wait until the syncapi has caught up with a write.
    published: watch::Sender<StreamPositions>,
    /// Room → joined users.
    rooms: HashMap<String, HashSet<String>>,
    /// User → rooms joined.
    user_rooms: HashMap<String, HashSet<String>>,
    /// User → waiting requests.
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// Room → waiting requests of non-members peeking into it (`/events?room_id=`).
    peekers: HashMap<String, Vec<oneshot::Sender<()>>>,
}

impl Actor for Notifier {
    type Context = Context<Self>;
}

impl Notifier {
    /// A notifier at `positions`, with the joined members of every room. The receiver
    /// follows the positions it reaches.
    pub fn new(
        positions: StreamPositions,
        joined: Vec<(String, String)>,
    ) -> (Notifier, watch::Receiver<StreamPositions>) {
        let (published, rx) = watch::channel(positions);
        let mut n = Notifier {
            positions,
            published,
            rooms: HashMap::new(),
            user_rooms: HashMap::new(),
            waiters: HashMap::new(),
            peekers: HashMap::new(),
        };
        for (room, user) in joined {
            n.set_membership(&room, &user, "join");
        }
        (n, rx)
    }

    fn set_membership(&mut self, room: &str, user: &str, membership: &str) {
        if membership == "join" {
            self.rooms
                .entry(room.to_owned())
                .or_default()
                .insert(user.to_owned());
            self.user_rooms
                .entry(user.to_owned())
                .or_default()
                .insert(room.to_owned());
        } else {
            if let Some(m) = self.rooms.get_mut(room) {
                m.remove(user);
                if m.is_empty() {
                    self.rooms.remove(room);
                }
            }
            if let Some(r) = self.user_rooms.get_mut(user) {
                r.remove(room);
                if r.is_empty() {
                    self.user_rooms.remove(user);
                }
            }
        }
    }

    /// Users sharing a room with `user` (and `user`).
    fn shared_with(&self, user: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        out.insert(user.to_owned());
        for room in self.user_rooms.get(user).into_iter().flatten() {
            out.extend(self.rooms.get(room).into_iter().flatten().cloned());
        }
        out
    }

    fn wake(&mut self, user: &str) {
        if let Some(list) = self.waiters.remove(user) {
            for w in list {
                let _ = w.send(());
            }
        }
    }
}

/// Registers a waiting request of `user_id`.
#[derive(Message)]
#[rtype(result = "Listening")]
pub struct Listen {
    pub user_id: String,
}

/// The positions a request may read up to, and what wakes it.
pub struct Listening {
    pub positions: StreamPositions,
    pub woken: oneshot::Receiver<()>,
}

impl<A, M> actix::dev::MessageResponse<A, M> for Listening
where
    A: Actor,
    M: Message<Result = Listening>,
{
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<M::Result>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

impl Handler<Listen> for Notifier {
    type Result = Listening;

    fn handle(&mut self, msg: Listen, _: &mut Context<Self>) -> Listening {
        let (tx, rx) = oneshot::channel();
        let list = self.waiters.entry(msg.user_id).or_default();
        // Requests that timed out dropped their receivers.
        list.retain(|w| !w.is_closed());
        list.push(tx);
        Listening {
            positions: self.positions,
            woken: rx,
        }
    }
}

/// Registers a waiting request that peeks into `room_id` without being a member: any
/// change in the room wakes it.
#[derive(Message)]
#[rtype(result = "Listening")]
pub struct ListenRoom {
    pub room_id: String,
}

impl Handler<ListenRoom> for Notifier {
    type Result = Listening;

    fn handle(&mut self, msg: ListenRoom, _: &mut Context<Self>) -> Listening {
        let (tx, rx) = oneshot::channel();
        let list = self.peekers.entry(msg.room_id).or_default();
        list.retain(|w| !w.is_closed());
        list.push(tx);
        Listening {
            positions: self.positions,
            woken: rx,
        }
    }
}

/// A stream moved to `position` (committed); wake who it concerns.
#[derive(Message, Debug, Default)]
#[rtype(result = "()")]
pub struct Advance {
    pub stream: Option<Stream>,
    pub position: i64,
    /// Rooms whose joined members it concerns.
    pub rooms: Vec<String>,
    /// Users it concerns directly.
    pub users: Vec<String>,
    /// Users whose presence changed: everyone sharing a room with them is concerned.
    pub presence_of: Vec<String>,
    /// Membership changes it carries: (room, user, membership).
    pub memberships: Vec<(String, String, String)>,
}

impl Handler<Advance> for Notifier {
    type Result = ();

    fn handle(&mut self, msg: Advance, _: &mut Context<Self>) {
        if let Some(stream) = msg.stream {
            self.positions.advance(stream, msg.position);
            self.published.send_replace(self.positions);
        }
        let mut concerned: HashSet<String> = msg.users.into_iter().collect();
        for room in &msg.rooms {
            concerned.extend(self.rooms.get(room).into_iter().flatten().cloned());
        }
        for (room, user, membership) in &msg.memberships {
            concerned.insert(user.clone());
            self.set_membership(room, user, membership);
            // Members who just joined are concerned by the room too.
            concerned.extend(self.rooms.get(room).into_iter().flatten().cloned());
        }
        for user in &msg.presence_of {
            concerned.extend(self.shared_with(user));
        }
        for user in concerned {
            self.wake(&user);
        }
        let rooms = msg
            .rooms
            .iter()
            .chain(msg.memberships.iter().map(|(r, _, _)| r));
        for room in rooms {
            for w in self.peekers.remove(room).into_iter().flatten() {
                let _ = w.send(());
            }
        }
    }
}

/// The users sharing a room with `user_id` (and the user).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct QuerySharedUsers {
    pub user_id: String,
}

impl Handler<QuerySharedUsers> for Notifier {
    type Result = Vec<String>;

    fn handle(&mut self, msg: QuerySharedUsers, _: &mut Context<Self>) -> Vec<String> {
        let mut v: Vec<String> = self.shared_with(&msg.user_id).into_iter().collect();
        v.sort();
        v
    }
}

/// The notifier's positions (what a request may read up to now).
#[derive(Message)]
#[rtype(result = "StreamPositions")]
pub struct QueryPositions;

impl<A, M> actix::dev::MessageResponse<A, M> for StreamPositions
where
    A: Actor,
    M: Message<Result = StreamPositions>,
{
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<M::Result>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

impl Handler<QueryPositions> for Notifier {
    type Result = StreamPositions;

    fn handle(&mut self, _: QueryPositions, _: &mut Context<Self>) -> StreamPositions {
        self.positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[actix_web::test]
    async fn wakes_exactly_the_members_of_the_room() {
        let (n, mut applied) = Notifier::new(
            StreamPositions::default(),
            vec![
                ("!a".into(), "@alice".into()),
                ("!a".into(), "@bob".into()),
                ("!b".into(), "@carol".into()),
            ],
        );
        let n = n.start();
        let alice = n
            .send(Listen {
                user_id: "@alice".into(),
            })
            .await
            .unwrap();
        let carol = n
            .send(Listen {
                user_id: "@carol".into(),
            })
            .await
            .unwrap();
        n.send(Advance {
            stream: Some(Stream::Pdu),
            position: 5,
            rooms: vec!["!a".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), alice.woken)
            .await
            .expect("alice woken")
            .unwrap();
        let mut carol_rx = carol.woken;
        assert!(carol_rx.try_recv().is_err(), "carol is not in !a");
        let p = n.send(QueryPositions).await.unwrap();
        assert_eq!(p.pdu, 5);
        assert_eq!(applied.wait_for(|p| p.pdu == 5).await.unwrap().pdu, 5);
        // A join makes the user a member for the next events.
        n.send(Advance {
            stream: Some(Stream::Pdu),
            position: 6,
            memberships: vec![("!a".into(), "@carol".into(), "join".into())],
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), carol_rx)
            .await
            .expect("carol woken by her join")
            .unwrap();
        let shared = n
            .send(QuerySharedUsers {
                user_id: "@carol".into(),
            })
            .await
            .unwrap();
        assert_eq!(shared, vec!["@alice", "@bob", "@carol"]);
        // A peeker of !b is woken by a change in !b, not in !a.
        let peek_a = n
            .send(ListenRoom {
                room_id: "!a".into(),
            })
            .await
            .unwrap();
        let peek_b = n
            .send(ListenRoom {
                room_id: "!b".into(),
            })
            .await
            .unwrap();
        n.send(Advance {
            stream: Some(Stream::Pdu),
            position: 7,
            rooms: vec!["!b".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), peek_b.woken)
            .await
            .expect("peeker of !b woken")
            .unwrap();
        let mut peek_a = peek_a.woken;
        assert!(peek_a.try_recv().is_err(), "nothing happened in !a");
    }
}
