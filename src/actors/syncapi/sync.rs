//! `/sync`: what changed for a user's device between a token and now, waiting for the
//! notifier when nothing has.

use super::actor::Deps;
use super::ephemeral::{presence_content, touch_presence};
use super::filter::{EventFilter, SyncFilter};
use super::format::{self, json_of, Format};
use super::messages::{QuerySync, MAX_SYNC_TIMEOUT_MS};
use super::notifier::{Listen, QuerySharedUsers};
use super::notify::Highlight;
use super::storage::current_state::{self, Membership};
use super::storage::room_events::{self, RoomEvent};
use super::storage::{account_data, presence, receipts, to_device};
use super::token::{Stream, StreamPositions};
use super::visibility::Visibility;
use super::SyncApiError;
use crate::storage::Conn;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Timeline events per room when the filter sets no limit.
const DEFAULT_TIMELINE_LIMIT: i64 = 10;
/// To-device messages per response; the rest come with the next sync.
const TO_DEVICE_LIMIT: i64 = 100;
/// Devices whose lazily loaded members are remembered before the memory is cleared.
const LAZY_CACHE_DEVICES: usize = 50_000;
/// Events scanned for unread counts per room.
const UNREAD_SCAN: i64 = 100;
/// State types shown to invited and knocking users.
const STRIPPED_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

pub async fn query_sync(deps: &Deps, msg: QuerySync) -> Result<Value, SyncApiError> {
    deps.catch_up().await;
    let since = match &msg.since {
        Some(s) => Some(
            StreamPositions::parse(s)
                .ok_or_else(|| SyncApiError::InvalidParam(format!("invalid since token {s:?}")))?,
        ),
        None => None,
    };
    let filter: SyncFilter = serde_json::from_value(msg.filter.clone())
        .map_err(|e| SyncApiError::InvalidParam(format!("invalid filter: {e}")))?;
    match msg.set_presence.as_deref() {
        None => touch_presence(deps, &msg.user_id, "online").await?,
        Some("offline") => {}
        Some(state @ ("online" | "unavailable")) => {
            touch_presence(deps, &msg.user_id, state).await?
        }
        Some(other) => {
            return Err(SyncApiError::InvalidParam(format!(
                "unknown set_presence {other:?}"
            )))
        }
    }
    if let Some(s) = since {
        // The client has everything up to its token: acknowledged to-device messages go.
        // Only when the token moved past what was last acknowledged: most syncs write nothing.
        let key = (msg.user_id.clone(), msg.device_id.clone());
        let acked = deps
            .to_device_acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        if acked.is_none_or(|a| s.to_device > a) {
            to_device::delete_upto(&deps.db, &msg.user_id, &msg.device_id, s.to_device).await?;
            let mut map = deps
                .to_device_acked
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if map.len() > LAZY_CACHE_DEVICES {
                map.clear();
            }
            map.insert(key, s.to_device);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(msg.timeout_ms.min(MAX_SYNC_TIMEOUT_MS));
    let wait = since.is_some() && !msg.full_state;
    loop {
        let listening = deps
            .notifier
            .send(Listen {
                user_id: msg.user_id.clone(),
            })
            .await?;
        let (body, empty) = build(deps, &msg, since, listening.positions, &filter).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if !wait || !empty || left.is_zero() {
            return Ok(body);
        }
        if tokio::time::timeout(left, listening.woken).await.is_err() {
            return Ok(body);
        }
    }
}

/// The user's own membership changes in one room since the token.
#[derive(Debug, Default)]
struct OwnChange {
    /// Joined at the token.
    joined_at_since: bool,
    /// A join since the token.
    joined_in_window: bool,
    /// Any other membership since the token (a leave before a rejoin).
    other_in_window: bool,
}

impl OwnChange {
    /// From the user's member events up to now, oldest first.
    fn of(history: &[RoomEvent], since: i64) -> OwnChange {
        let membership = |e: &RoomEvent| Membership::from_event(e).membership;
        let mut c = OwnChange {
            joined_at_since: history
                .iter()
                .rev()
                .find(|e| e.position <= since)
                .is_some_and(|e| membership(e) == "join"),
            ..Default::default()
        };
        for e in history.iter().filter(|e| e.position > since) {
            if membership(e) == "join" {
                c.joined_in_window = true;
            } else {
                c.other_in_window = true;
            }
        }
        c
    }

    /// Whether a room the user is joined to now is new to the client.
    fn newly_joined(&self) -> bool {
        !self.joined_at_since || self.other_in_window
    }
}

/// One sync computation.
struct Sync<'a> {
    deps: &'a Deps,
    msg: &'a QuerySync,
    since: Option<StreamPositions>,
    now: StreamPositions,
    filter: &'a SyncFilter,
    fmt: Format<'a>,
    ignored: HashSet<String>,
    /// Users whose device lists the client should refresh, and users it no longer shares a
    /// room with.
    changed_users: HashSet<String>,
    left_users: HashSet<String>,
    /// Users who joined, were invited or knocked where the user sees it in this
    /// incremental sync, and the members of rooms the user newly joined: their current
    /// presence comes with it.
    new_members: HashSet<String>,
    /// Room → (thread, position) of the user's read receipts.
    read_positions: HashMap<String, Vec<(String, i64)>>,
}

async fn build(
    deps: &Deps,
    msg: &QuerySync,
    since: Option<StreamPositions>,
    now: StreamPositions,
    filter: &SyncFilter,
) -> Result<(Value, bool), SyncApiError> {
    let db = &deps.db;
    let user = msg.user_id.as_str();
    let ignored = ignored_users(db, user).await?;
    let mut s = Sync {
        deps,
        msg,
        since,
        now,
        filter,
        fmt: Format {
            user_id: user,
            device_id: Some(&msg.device_id),
            federation: filter.event_format.as_deref() == Some("federation"),
            fields: filter.event_fields.as_deref(),
            with_room_id: false,
            upto: i64::MAX,
            ignored: std::sync::Arc::new(ignored.clone()),
        },
        ignored,
        changed_users: HashSet::new(),
        left_users: HashSet::new(),
        new_members: HashSet::new(),
        read_positions: receipts::select_read_positions(db, user).await?,
    };
    if msg.since.is_none() || msg.full_state {
        // A fresh start: nothing was sent to this device yet.
        deps.lazy_members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(msg.user_id.clone(), msg.device_id.clone()));
    }
    let pdu_from = since.map_or(0, |s| s.pdu);
    let memberships = current_state::select_memberships_of(db, user).await?;
    // A stream that did not move since the token has nothing to read.
    let moved = |s: Stream| since.is_none_or(|t| t.get(s) < now.get(s));
    let changed_rooms: HashSet<String> = match since {
        Some(_) if moved(Stream::Pdu) => room_events::rooms_with_events(db, pdu_from, now.pdu)
            .await?
            .into_iter()
            .collect(),
        _ => HashSet::new(),
    };
    let acct = if moved(Stream::AccountData) {
        account_data::select_since(
            db,
            user,
            since.map_or(0, |s| s.account_data),
            now.account_data,
        )
        .await?
    } else {
        Vec::new()
    };
    let joined: Vec<String> = memberships
        .iter()
        .filter(|m| m.membership == "join" && filter.room.room_allowed(&m.room_id))
        .map(|m| m.room_id.clone())
        .collect();
    let all_receipts = if moved(Stream::Receipts) {
        receipts::select_since(db, &joined, since.map_or(0, |s| s.receipts), now.receipts).await?
    } else {
        Vec::new()
    };

    let (mut join, mut invite, mut knock, mut leave) =
        (Map::new(), Map::new(), Map::new(), Map::new());
    for m in &memberships {
        if !filter.room.room_allowed(&m.room_id) {
            continue;
        }
        // The user's own member events since the token, read only for rooms where their
        // membership moved (a few per sync): the consumer may have applied a newer
        // membership than the positions this sync reads up to (use the one at those
        // positions), and a join since the token is a new room for the client.
        let mut change = OwnChange::default();
        let at_now;
        let m = if m.position > pdu_from && (since.is_some() || m.position > now.pdu) {
            let history =
                room_events::select_state_history(db, &m.room_id, "m.room.member", user, now.pdu)
                    .await?;
            change = OwnChange::of(&history, pdu_from);
            match history.last() {
                Some(e) if m.position > now.pdu => {
                    at_now = Membership::from_event(e);
                    &at_now
                }
                Some(_) => m,
                None => continue,
            }
        } else {
            m
        };
        let newly = m.position > pdu_from;
        let initial = since.is_none();
        match m.membership.as_str() {
            "join" => {
                let room_acct: Vec<_> = acct.iter().filter(|a| a.room_id == m.room_id).collect();
                let room_receipts: Vec<_> = all_receipts
                    .iter()
                    .filter(|r| r.room_id == m.room_id)
                    .filter(|r| r.receipt_type != "m.read.private" || r.user_id == user)
                    .collect();
                let typing = deps
                    .typing
                    .since(&m.room_id, since.map(|s| s.typing).filter(|_| !newly));
                // As Synapse: a join since the token (or a leave and rejoin) is a new room
                // for the client, with history and full state; a change of the user's own
                // display name or avatar is not.
                let newly_joined = !initial && newly && change.newly_joined();
                let full = initial || msg.full_state || newly_joined;
                if !full
                    && !changed_rooms.contains(&m.room_id)
                    && room_acct.is_empty()
                    && room_receipts.is_empty()
                    && typing.is_none()
                {
                    continue;
                }
                let room = s
                    .joined_room(m, full, newly_joined, room_acct, room_receipts, typing)
                    .await?;
                if let Some(room) = room {
                    join.insert(m.room_id.clone(), room);
                }
            }
            "invite" if newly || initial => {
                let event = room_events::select_by_id(db, &m.event_id).await?;
                if event
                    .as_ref()
                    .is_some_and(|e| s.ignored.contains(&e.sender))
                {
                    continue;
                }
                // An invite from another server into a room not held here carries the
                // stripped state its server sent (`unsigned.invite_room_state`), plus the
                // invite itself.
                let remote = event
                    .as_ref()
                    .and_then(|e| given_stripped_state(&e.json, "invite_room_state", user));
                let events = match remote {
                    Some(events) => events,
                    None => s.stripped_state(&m.room_id, user).await?,
                };
                invite.insert(
                    m.room_id.clone(),
                    json!({"invite_state": {"events": events}}),
                );
            }
            "knock" if newly || initial => {
                // A knock on a room not held here carries the state the room's server
                // sent back (`unsigned.knock_room_state`), plus the knock itself.
                let remote = room_events::select_by_id(db, &m.event_id)
                    .await?
                    .and_then(|e| given_stripped_state(&e.json, "knock_room_state", user));
                let events = match remote {
                    Some(events) => events,
                    None => s.stripped_state(&m.room_id, user).await?,
                };
                knock.insert(
                    m.room_id.clone(),
                    json!({"knock_state": {"events": events}}),
                );
            }
            "leave" | "ban" if (!initial && newly) || (initial && filter.room.include_leave) => {
                // Joined and left since the token: the client never had the room, so it
                // comes with its history and state, as a newly joined room would.
                let whole = !initial && change.joined_in_window && !change.joined_at_since;
                let room = s.left_room(m, whole).await?;
                leave.insert(m.room_id.clone(), room);
            }
            _ => {}
        }
    }

    let mut global_acct: Vec<Value> = acct
        .iter()
        .filter(|a| a.room_id.is_empty())
        .map(|a| global_account_data(user, &a.data_type, &a.content))
        .collect();
    // Every client needs push rules from its first sync on, including a user who never
    // changed them (and so has no row): the defaults.
    if since.is_none()
        && !global_acct
            .iter()
            .any(|e| e["type"] == crate::push_rules::ACCOUNT_DATA_TYPE)
    {
        if let Ok(uid) = ruma::UserId::parse(user) {
            global_acct.push(json!({
                "type": crate::push_rules::ACCOUNT_DATA_TYPE,
                "content": crate::push_rules::content(&crate::push_rules::effective(&uid, None)),
            }));
        }
    }
    global_acct.retain(|e| filter.account_data.allows(e));

    let presence_events = if moved(Stream::Presence) || !s.new_members.is_empty() {
        s.presence().await?
    } else {
        Vec::new()
    };
    let mut next = now;
    let to_device_events = if !moved(Stream::ToDevice) {
        Vec::new()
    } else {
        let rows = to_device::select(
            db,
            user,
            &msg.device_id,
            since.map_or(0, |s| s.to_device),
            now.to_device,
            TO_DEVICE_LIMIT,
        )
        .await?;
        if rows.len() as i64 == TO_DEVICE_LIMIT {
            if let Some(last) = rows.last() {
                next.to_device = last.position;
            }
        }
        rows.iter()
            .map(
                |t| json!({"sender": t.sender, "type": t.event_type, "content": parse(&t.content)}),
            )
            .collect::<Vec<_>>()
    };
    let shared: HashSet<String> = if s.left_users.is_empty() {
        HashSet::new()
    } else {
        deps.notifier
            .send(QuerySharedUsers {
                user_id: user.to_owned(),
            })
            .await?
            .into_iter()
            .collect()
    };
    let mut changed: Vec<&String> = s.changed_users.iter().filter(|u| *u != user).collect();
    changed.sort();
    let mut left: Vec<&String> = s
        .left_users
        .iter()
        .filter(|u| *u != user && !shared.contains(*u))
        .collect();
    left.sort();

    let empty = join.is_empty()
        && invite.is_empty()
        && knock.is_empty()
        && leave.is_empty()
        && global_acct.is_empty()
        && presence_events.is_empty()
        && to_device_events.is_empty()
        && changed.is_empty()
        && left.is_empty();
    let body = json!({
        "next_batch": next.to_string(),
        "rooms": {"join": join, "invite": invite, "knock": knock, "leave": leave},
        "account_data": {"events": global_acct},
        "presence": {"events": presence_events},
        "to_device": {"events": to_device_events},
        "device_lists": {"changed": changed, "left": left},
        "device_unused_fallback_key_types": [],
    });
    Ok((body, empty))
}

/// A global account-data event of `user`. Push rules are the user's effective rules: what
/// was stored merged into this version's server defaults.
pub(super) fn global_account_data(user: &str, data_type: &str, content: &str) -> Value {
    let mut content = parse(content);
    if data_type == crate::push_rules::ACCOUNT_DATA_TYPE {
        if let Ok(uid) = ruma::UserId::parse(user) {
            content =
                crate::push_rules::content(&crate::push_rules::effective(&uid, Some(&content)));
        }
    }
    json!({"type": data_type, "content": content})
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!({}))
}

/// The users in the user's `m.ignored_user_list`.
pub async fn ignored_users(db: &impl Conn, user: &str) -> Result<HashSet<String>, SyncApiError> {
    let content = account_data::select_one(db, user, None, "m.ignored_user_list").await?;
    Ok(content
        .map(|c| parse(&c))
        .and_then(|c| c["ignored_users"].as_object().cloned())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default())
}

/// Reads up to `limit` events of a room in `(lo, hi]` that pass `filter`, visibility and the
/// ignore list, oldest first; `true` when more may follow (more matched than fit, or the scan
/// stopped at its bound). Events at or after `trusted_from` (the user's current join) are
/// visible without checking.
#[allow(clippy::too_many_arguments)]
pub async fn timeline(
    db: &impl Conn,
    room_id: &str,
    user: &str,
    lo: i64,
    hi: i64,
    limit: i64,
    filter: &EventFilter,
    ignored: &HashSet<String>,
    trusted_from: i64,
    erased: &super::visibility::ErasedUsers,
) -> Result<(Vec<RoomEvent>, bool), SyncApiError> {
    let scan = Scan {
        room_id,
        user,
        filter,
        ignored,
        trusted_from,
        current_state_visible: true,
        erased,
    };
    let mut page = scan.run(db, lo, hi, limit, true).await?;
    page.events.reverse();
    Ok((page.events, page.more))
}

/// Reading a room's events through a filter, the ignore list and history visibility.
pub struct Scan<'a> {
    pub room_id: &'a str,
    pub user: &'a str,
    pub filter: &'a EventFilter,
    pub ignored: &'a HashSet<String>,
    /// Events at or after this position are visible without checking (the user's join).
    pub trusted_from: i64,
    /// State events that are part of the room's current state pass history visibility
    /// (`/sync` timelines, as Synapse's `always_include_ids`: a member sees the room's
    /// current state in its timeline even under `joined` or `invited` history).
    pub current_state_visible: bool,
    /// Erased users, whose events are redacted for readers who were not joined then.
    pub erased: &'a super::visibility::ErasedUsers,
}

/// What a scan decided about one row.
enum Verdict {
    Keep,
    Skip,
    /// A state event history visibility hides: kept if it is current state.
    IfCurrent,
}

/// What a scan found.
pub struct Page {
    /// In scan order.
    pub events: Vec<RoomEvent>,
    /// Whether more may follow.
    pub more: bool,
    /// Where to go on from when `more`: a token position (backwards: events at or before it
    /// remain; forwards: events after it).
    pub resume: i64,
}

/// Rows a scan reads at most (it stops there and says more may follow).
const SCAN_ROWS: i64 = 2000;

impl Scan<'_> {
    /// Up to `limit` events in `(lo, hi]` that pass, in scan order (newest first when
    /// `backwards`).
    pub async fn run(
        &self,
        db: &impl Conn,
        lo: i64,
        hi: i64,
        limit: i64,
        backwards: bool,
    ) -> Result<Page, SyncApiError> {
        let mut visibility: Option<Visibility> = None;
        let mut out: Vec<RoomEvent> = Vec::new();
        let (mut lo, mut hi) = (lo, hi);
        let page = (limit + 1).clamp(20, 500);
        let mut read = 0;
        let mut exhausted = false;
        while (out.len() as i64) <= limit {
            if hi <= lo {
                exhausted = true;
                break;
            }
            if read >= SCAN_ROWS {
                break;
            }
            let rows = room_events::select_range(db, self.room_id, lo, hi, page, backwards).await?;
            read += rows.len() as i64;
            let full_page = rows.len() as i64 == page;
            let mut verdicts = Vec::with_capacity(rows.len());
            let mut hidden_state = Vec::new();
            for e in &rows {
                let verdict = if (e.state_key.is_none() && self.ignored.contains(&e.sender))
                    || !self.filter.allows(&json_of(e))
                {
                    Verdict::Skip
                } else if e.position < self.trusted_from {
                    if visibility.is_none() {
                        visibility =
                            Some(Visibility::load(db, self.room_id, self.user, self.erased).await?);
                    }
                    if visibility.as_ref().is_none_or(|v| v.allows(e)) {
                        Verdict::Keep
                    } else if self.current_state_visible && e.state_key.is_some() {
                        hidden_state.push(e.event_id.clone());
                        Verdict::IfCurrent
                    } else {
                        Verdict::Skip
                    }
                } else {
                    Verdict::Keep
                };
                verdicts.push(verdict);
            }
            // One statement per page, and only for pages with hidden state events.
            let current = if hidden_state.is_empty() {
                HashSet::new()
            } else {
                current_state::select_current_among(db, self.room_id, &hidden_state).await?
            };
            for (e, verdict) in rows.into_iter().zip(verdicts) {
                if backwards {
                    hi = e.position - 1;
                } else {
                    lo = e.position;
                }
                let keep = match verdict {
                    Verdict::Keep => true,
                    Verdict::Skip => false,
                    Verdict::IfCurrent => current.contains(&e.event_id),
                };
                if !keep {
                    continue;
                }
                let mut e = e;
                if let (true, Some(v)) = (e.position < self.trusted_from, &visibility) {
                    v.apply_erasure(&mut e);
                }
                out.push(e);
                if out.len() as i64 > limit {
                    break;
                }
            }
            if !full_page && (out.len() as i64) <= limit {
                exhausted = true;
                break;
            }
        }
        let over = out.len() as i64 > limit;
        out.truncate(limit.max(0) as usize);
        let more = over || !exhausted;
        let resume = match (over, out.last()) {
            (true, Some(last)) if backwards => last.position - 1,
            (true, Some(last)) => last.position,
            _ if backwards => hi,
            _ => lo,
        };
        Ok(Page {
            events: out,
            more,
            resume,
        })
    }
}

impl Sync<'_> {
    fn lazy_key(&self) -> (String, String) {
        (self.msg.user_id.clone(), self.msg.device_id.clone())
    }

    /// State events in the filter, with lazy loading of members applied: only the members
    /// of the timeline's senders (and the user's own), and only those this device was not
    /// sent yet; with `all_members` (a gapped incremental sync) every member event is kept.
    fn filter_state(
        &self,
        room_id: &str,
        mut state: Vec<RoomEvent>,
        timeline: &[RoomEvent],
        all_members: bool,
    ) -> Vec<RoomEvent> {
        let f = &self.filter.room.state;
        state.retain(|e| f.allows(&json_of(e)));
        if !f.lazy_load_members {
            return state;
        }
        let mut wanted: HashSet<&str> = timeline.iter().map(|e| e.sender.as_str()).collect();
        wanted.insert(self.msg.user_id.as_str());
        let mut cache = self
            .deps
            .lazy_members
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() > LAZY_CACHE_DEVICES {
            // Forgetting only costs resending members the client already has.
            cache.clear();
        }
        let sent = cache
            .entry(self.lazy_key())
            .or_default()
            .entry(room_id.to_owned())
            .or_default();
        state.retain(|e| {
            if e.event_type != "m.room.member" {
                return true;
            }
            let who = e.state_key.as_deref().unwrap_or_default();
            (all_members || wanted.contains(who))
                && (f.include_redundant_members || sent.get(who) != Some(&e.event_id))
        });
        for e in state.iter().chain(timeline) {
            if e.event_type == "m.room.member" {
                sent.insert(e.state_key.clone().unwrap_or_default(), e.event_id.clone());
            }
        }
        state
    }

    #[allow(clippy::too_many_arguments)]
    async fn joined_room(
        &mut self,
        m: &Membership,
        full: bool,
        newly_joined: bool,
        room_acct: Vec<&account_data::AccountData>,
        room_receipts: Vec<&receipts::Receipt>,
        typing: Option<Vec<String>>,
    ) -> Result<Option<Value>, SyncApiError> {
        let db = &self.deps.db;
        let room = m.room_id.as_str();
        let tf = &self.filter.room.timeline;
        let limit = tf.limit_or(DEFAULT_TIMELINE_LIMIT);
        let since = self.since.map_or(0, |s| s.pdu);
        // Initial syncs and rooms new to the client show the room's latest events, history
        // from before the token included; other rooms what happened since the token.
        let lo = if newly_joined { 0 } else { since };
        let (events, more) = timeline(
            db,
            room,
            &self.msg.user_id,
            lo,
            self.now.pdu,
            limit,
            tf,
            &self.ignored,
            m.position,
            &self.deps.erased,
        )
        .await?;
        // A newly joined room is limited whenever its timeline does not start at the room's
        // creation, so the client knows there is history before it (Synapse marks every
        // newly joined room limited).
        let limited = more
            || (newly_joined
                && events
                    .first()
                    .is_none_or(|e| e.event_type != "m.room.create"));
        let first = events.first().map_or(self.now.pdu + 1, |e| e.position);
        let shown: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        // In full mode the whole current state is read anyway: the summary and the encryption
        // check come from it instead of statements of their own.
        let mut current: Option<Vec<RoomEvent>> = None;
        let mut state = if full {
            // The state before the timeline: with the timeline's state events, the whole
            // room state.
            let all = current_state::select_state_events(db, room).await?;
            // Two common cases need no statement: a timeline that starts at the room's
            // creation has nothing before it, and when no current state is as new as the
            // timeline, no state changed within it (the state before is the current state).
            let before = if events
                .first()
                .is_some_and(|e| e.event_type == "m.room.create")
            {
                Vec::new()
            } else if all.iter().all(|e| e.position < first) {
                all.clone()
            } else if tf.is_unconstrained() {
                // An unfiltered timeline reaches up to now, so its state events are every
                // state change since it began: no statement to find them.
                state_before(db, room, &all, first, Some(&events)).await?
            } else {
                state_before(db, room, &all, first, None).await?
            };
            let before = with_unshown_current(before, &all, first, &shown);
            current = Some(all);
            before
        } else if limited || !tf.is_unconstrained() {
            // The state changes since the token that the timeline does not show: every
            // piece of state changed in the gap before a limited timeline (its latest
            // value, leaves included), and those the timeline filter left out.
            let hi = if tf.is_unconstrained() {
                first
            } else {
                self.now.pdu + 1
            };
            room_events::select_state_in_range(db, room, since, hi).await?
        } else {
            Vec::new()
        };
        if !full && self.filter.room.state.lazy_load_members {
            // Members of the timeline's senders whose membership neither the state nor the
            // timeline (before their first event) shows: the client may not have them yet.
            let mut have: HashSet<&str> = state
                .iter()
                .filter(|e| e.event_type == "m.room.member")
                .filter_map(|e| e.state_key.as_deref())
                .collect();
            let mut wanted: Vec<String> = Vec::new();
            for e in &events {
                if !have.contains(e.sender.as_str()) {
                    have.insert(e.sender.as_str());
                    wanted.push(e.sender.clone());
                }
                if e.event_type == "m.room.member" {
                    if let Some(k) = e.state_key.as_deref() {
                        have.insert(k);
                    }
                }
            }
            if !wanted.is_empty() {
                let members = current_state::select_member_events(db, room, &wanted).await?;
                state.extend(members);
            }
        }
        state.retain(|e| !shown.contains(e.event_id.as_str()));
        // A gapped incremental sync keeps every member change of the gap even when lazy
        // loading members (as Synapse, which turns lazy loading off for gaps).
        let state = self.filter_state(room, state, &events, !full && limited);
        let mut ephemeral = Vec::new();
        if let Some(users) = typing {
            ephemeral.push(json!({"type": "m.typing", "content": {"user_ids": users}}));
        }
        if !room_receipts.is_empty() {
            let mut content = Map::new();
            for r in room_receipts {
                let mut receipt = json!({"ts": r.ts});
                if !r.thread_id.is_empty() {
                    receipt["thread_id"] = json!(r.thread_id);
                }
                let by_event = content
                    .entry(r.event_id.clone())
                    .or_insert_with(|| json!({}));
                if !by_event[&r.receipt_type].is_object() {
                    by_event[&r.receipt_type] = json!({});
                }
                by_event[&r.receipt_type][&r.user_id] = receipt;
            }
            ephemeral.push(json!({"type": "m.receipt", "content": content}));
        }
        ephemeral.retain(|e| self.filter.room.ephemeral.allows(e));
        let account_data: Vec<Value> = room_acct
            .iter()
            .map(|a| json!({"type": a.data_type, "content": parse(&a.content)}))
            .filter(|e| self.filter.room.account_data.allows(e))
            .collect();
        // As Synapse: an incremental sync leaves out a room that has nothing left once the
        // filters and the ignore list have been applied.
        if !full
            && events.is_empty()
            && state.is_empty()
            && ephemeral.is_empty()
            && account_data.is_empty()
        {
            return Ok(None);
        }
        // Device list changes matter in encrypted rooms only.
        let encrypted = current
            .as_ref()
            .is_some_and(|c| c.iter().any(|e| e.event_type == "m.room.encryption"))
            || events
                .iter()
                .chain(&state)
                .any(|e| e.event_type == "m.room.encryption")
            || (current.is_none()
                && events
                    .iter()
                    .chain(&state)
                    .any(|e| e.event_type == "m.room.member")
                && current_state::select_holder(db, room, "m.room.encryption", "")
                    .await?
                    .is_some());
        let incremental = self.since.is_some();
        for e in state.iter().chain(&events) {
            if e.event_type != "m.room.member" {
                continue;
            }
            let who = e.state_key.clone().unwrap_or_default();
            let membership = json_of(e)["content"]["membership"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            // Users who joined (or were invited) where the user can see it: their presence
            // comes with this sync (as Synapse).
            if incremental && matches!(membership.as_str(), "join" | "invite" | "knock") {
                self.new_members.insert(who.clone());
            }
            if !encrypted {
                continue;
            }
            if membership == "join" && (full || e.position > since) {
                self.changed_users.insert(who);
            } else if matches!(membership.as_str(), "leave" | "ban") && e.position > since {
                self.left_users.insert(who);
            }
        }
        let names_changed = state.iter().chain(&events).any(|e| {
            matches!(
                e.event_type.as_str(),
                "m.room.name" | "m.room.canonical_alias"
            )
        });
        let members_changed = full
            || state
                .iter()
                .chain(&events)
                .any(|e| e.event_type == "m.room.member");
        let summary = if let Some(current) = &current {
            // In the order they got their membership, as `select_summary` gives them.
            let mut member_events: Vec<&RoomEvent> = current
                .iter()
                .filter(|e| e.event_type == "m.room.member")
                .collect();
            member_events.sort_by_key(|e| e.position);
            let members: Vec<(String, String)> = member_events
                .iter()
                .map(|e| {
                    let membership = json_of(e)["content"]["membership"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    (e.state_key.clone().unwrap_or_default(), membership)
                })
                .collect();
            if newly_joined {
                let me = self.msg.user_id.as_str();
                self.new_members.extend(
                    members
                        .iter()
                        .filter(|(u, m)| m == "join" && u != me)
                        .map(|(u, _)| u.clone()),
                );
            }
            let named = current
                .iter()
                .filter(|e| {
                    matches!(
                        e.event_type.as_str(),
                        "m.room.name" | "m.room.canonical_alias"
                    )
                })
                .any(|e| current_state::names_room(&e.event_type, &json_of(e)["content"]));
            summary(
                &current_state::SummaryState { members, named },
                &self.msg.user_id,
            )
        } else if members_changed || names_changed {
            summary(
                &current_state::select_summary(db, room).await?,
                &self.msg.user_id,
            )
        } else {
            json!({})
        };
        let timeline_json = format::events(db, &events, &self.fmt).await?;
        let state_json: Vec<Value> = state
            .iter()
            .map(|e| format::event(e, &self.fmt, None))
            .collect();
        let prev_batch = StreamPositions {
            pdu: first - 1,
            ..self.now
        };
        let (unread, threads) = self.unread(m).await?;
        let mut out = json!({
            "timeline": {"events": timeline_json, "limited": limited, "prev_batch": prev_batch.to_string()},
            "state": {"events": state_json},
            "ephemeral": {"events": ephemeral},
            "account_data": {"events": account_data},
            "summary": summary,
            "unread_notifications": unread,
        });
        if tf.unread_thread_notifications {
            out["unread_thread_notifications"] = threads;
        }
        Ok(Some(out))
    }

    /// Unread counts after the user's read receipts (or join), by the default push rules:
    /// (room counts, per-thread counts). Unthreaded and `main` receipts bound the room;
    /// a thread's own receipt (or a later unthreaded one) bounds the thread.
    async fn unread(&self, m: &Membership) -> Result<(Value, Value), SyncApiError> {
        let db = &self.deps.db;
        let user = self.msg.user_id.as_str();
        let no_receipts = Vec::new();
        let read = self.read_positions.get(&m.room_id).unwrap_or(&no_receipts);
        let mut main = m.position;
        let mut unthreaded = m.position;
        let mut by_thread: HashMap<&str, i64> = HashMap::new();
        for (thread, position) in read {
            match thread.as_str() {
                "" => {
                    unthreaded = unthreaded.max(*position);
                    main = main.max(*position);
                }
                "main" => main = main.max(*position),
                root => {
                    by_thread.insert(root, *position);
                }
            }
        }
        let from = main
            .min(by_thread.values().copied().min().unwrap_or(main))
            .min(unthreaded);
        let events =
            room_events::select_range(db, &m.room_id, from, self.now.pdu, UNREAD_SCAN, true)
                .await?;
        let mut room = (0u64, 0u64);
        let mut threads: HashMap<String, (u64, u64)> = HashMap::new();
        let split = self.filter.room.timeline.unread_thread_notifications;
        let mut room_power = RoomPower::default();
        for e in &events {
            if self.ignored.contains(&e.sender) {
                continue;
            }
            let j = json_of(e);
            let rel = &j["content"]["m.relates_to"];
            let thread = rel["event_id"]
                .as_str()
                .filter(|_| rel["rel_type"] == "m.thread");
            let bound = match thread {
                Some(root) => by_thread
                    .get(root)
                    .copied()
                    .unwrap_or(m.position)
                    .max(unthreaded),
                None => main,
            };
            if e.position <= bound {
                continue;
            }
            let (notify, highlight) = super::notify::evaluate(&j, user, m.display_name.as_deref());
            if !notify {
                continue;
            }
            let highlight = match highlight {
                Highlight::No => false,
                Highlight::Yes => true,
                Highlight::IfSenderMayNotifyRoom => {
                    room_power.may_notify_room(db, &m.room_id, &j).await?
                }
            };
            let counts = match thread {
                Some(root) if split => threads.entry(root.to_owned()).or_default(),
                _ => &mut room,
            };
            counts.0 += 1;
            counts.1 += u64::from(highlight);
        }
        let threads: Map<String, Value> = threads
            .into_iter()
            .map(|(k, (n, h))| (k, json!({"notification_count": n, "highlight_count": h})))
            .collect();
        Ok((
            json!({"notification_count": room.0, "highlight_count": room.1}),
            Value::Object(threads),
        ))
    }

    /// A room the user left (or was kicked or banned from), up to their leave. `whole`: the
    /// user joined it after the token, so the client never had it: its history and the
    /// whole state before the timeline come with it, as with a newly joined room.
    async fn left_room(&mut self, m: &Membership, whole: bool) -> Result<Value, SyncApiError> {
        let db = &self.deps.db;
        let tf = &self.filter.room.timeline;
        let limit = tf.limit_or(DEFAULT_TIMELINE_LIMIT);
        let lo = if whole {
            0
        } else {
            self.since.map_or(0, |s| s.pdu)
        };
        let (events, more) = timeline(
            db,
            &m.room_id,
            &self.msg.user_id,
            lo,
            m.position,
            limit,
            tf,
            &self.ignored,
            i64::MAX,
            &self.deps.erased,
        )
        .await?;
        let limited = more
            || (whole
                && events
                    .first()
                    .is_none_or(|e| e.event_type != "m.room.create"));
        let first = events.first().map_or(m.position + 1, |e| e.position);
        // The state reaches back past the timeline's start to history backfilled from other
        // servers (below position 0) when the whole room is read.
        let state_lo = if whole || self.since.is_none() {
            i64::MIN
        } else {
            lo
        };
        let mut state = if self.since.is_none() || limited {
            room_events::select_state_in_range(db, &m.room_id, state_lo, first).await?
        } else {
            Vec::new()
        };
        if !tf.is_unconstrained() {
            // State changes up to the leave that the timeline filter left out.
            let shown: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            let at_leave =
                room_events::select_state_in_range(db, &m.room_id, state_lo, m.position + 1)
                    .await?;
            state = with_unshown_current(state, &at_leave, first, &shown);
        }
        let gapped = self.since.is_some() && !whole && limited;
        let state = self.filter_state(&m.room_id, state, &events, gapped);
        let timeline_json = format::events(db, &events, &self.fmt).await?;
        let prev_batch = StreamPositions {
            pdu: first - 1,
            ..self.now
        };
        let acct = account_data::select_since(db, &self.msg.user_id, 0, self.now.account_data)
            .await?
            .into_iter()
            .filter(|a| a.room_id == m.room_id)
            .map(|a| json!({"type": a.data_type, "content": parse(&a.content)}))
            .filter(|e| self.filter.room.account_data.allows(e))
            .collect::<Vec<_>>();
        Ok(json!({
            "timeline": {"events": timeline_json, "limited": limited, "prev_batch": prev_batch.to_string()},
            "state": {"events": state.iter().map(|e| format::event(e, &self.fmt, None)).collect::<Vec<_>>()},
            "account_data": {"events": acct},
        }))
    }

    /// The stripped state an invited or knocking user sees.
    async fn stripped_state(&self, room_id: &str, user: &str) -> Result<Vec<Value>, SyncApiError> {
        Ok(current_state::select_state_events(&self.deps.db, room_id)
            .await?
            .iter()
            .filter(|e| {
                STRIPPED_TYPES.contains(&e.event_type.as_str())
                    || (e.event_type == "m.room.member" && e.state_key.as_deref() == Some(user))
            })
            .map(|e| {
                let j = json_of(e);
                json!({"type": j["type"], "state_key": j["state_key"], "content": j["content"], "sender": j["sender"]})
            })
            .collect())
    }

    /// Presence of the users sharing a room with the user, changed since the token, and of
    /// those who newly share one.
    async fn presence(&self) -> Result<Vec<Value>, SyncApiError> {
        let f = &self.filter.presence;
        if f.types.as_ref().is_some_and(|t| t.is_empty()) || f.limit == Some(0) {
            return Ok(Vec::new());
        }
        let users = self
            .deps
            .notifier
            .send(QuerySharedUsers {
                user_id: self.msg.user_id.clone(),
            })
            .await?;
        let mut rows = if self.since.is_none_or(|t| t.presence < self.now.presence) {
            presence::select_since(
                &self.deps.db,
                &users,
                self.since.map_or(0, |s| s.presence),
                self.now.presence,
            )
            .await?
        } else {
            Vec::new()
        };
        // The current presence of who newly shares a room with the user, changed since the
        // token or not (as Synapse); one who never had any reads as offline.
        let me = self.msg.user_id.as_str();
        let mut extra: Vec<String> = self
            .new_members
            .iter()
            .filter(|u| *u != me && !rows.iter().any(|p| &p.user_id == *u))
            .cloned()
            .collect();
        extra.sort();
        let mut out: Vec<Value> = Vec::new();
        if !extra.is_empty() {
            let known = presence::select_users(&self.deps.db, &extra, self.now.presence).await?;
            for u in &extra {
                match known.iter().find(|p| &p.user_id == u) {
                    Some(p) => rows.push(p.clone()),
                    None => out.push(json!({
                        "type": "m.presence",
                        "sender": u,
                        "content": {"presence": "offline"},
                    })),
                }
            }
        }
        out.splice(
            0..0,
            rows.iter().map(
                |p| json!({"type": "m.presence", "sender": p.user_id, "content": presence_content(p)}),
            ),
        );
        out.retain(|e| f.allows(e));
        Ok(out)
    }
}

/// The power levels room mentions are checked against, loaded once per room and power
/// levels event.
#[derive(Default)]
struct RoomPower {
    /// The create event's (sender, content), and whether the room's version privileges its
    /// creators; loaded at the first room mention.
    create: Option<Option<(String, Value, bool)>>,
    /// Power levels content by the ID of the power levels event.
    levels: HashMap<String, Value>,
}

impl RoomPower {
    /// Whether the sender of `event` (federation format) may notify the whole room, by the
    /// power levels among its auth events (as Synapse: the power levels it was sent under).
    async fn may_notify_room(
        &mut self,
        db: &impl Conn,
        room_id: &str,
        event: &Value,
    ) -> Result<bool, SyncApiError> {
        let sender = event["sender"].as_str().unwrap_or_default();
        let auth: Vec<String> = event["auth_events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let pl_id = auth
            .iter()
            .find(|id| self.levels.contains_key(*id))
            .cloned();
        let pl_id = match pl_id {
            Some(id) => Some(id),
            None => {
                let mut found = None;
                for e in room_events::select_by_ids(db, &auth).await? {
                    if e.event_type == "m.room.power_levels" && e.state_key.as_deref() == Some("") {
                        self.levels
                            .insert(e.event_id.clone(), json_of(&e)["content"].clone());
                        found = Some(e.event_id.clone());
                    }
                }
                found
            }
        };
        if self.create.is_none() {
            let mut create = None;
            if let Some(id) = current_state::select_holder(db, room_id, "m.room.create", "").await?
            {
                if let Some(e) = room_events::select_by_id(db, &id).await? {
                    let content = json_of(&e)["content"].clone();
                    let version = content["room_version"].as_str().unwrap_or("1").to_owned();
                    let privileged = crate::pdu::rules(&version)
                        .is_ok_and(|(_, r)| r.authorization.explicitly_privilege_room_creators);
                    create = Some((e.sender.clone(), content, privileged));
                }
            }
            self.create = Some(create);
        }
        let null = Value::Null;
        let levels = pl_id
            .as_ref()
            .and_then(|id| self.levels.get(id))
            .unwrap_or(&null);
        let create = self.create.as_ref().and_then(|c| c.as_ref());
        Ok(super::notify::may_notify_room(
            sender,
            levels,
            create.map(|(s, c, _)| (s.as_str(), c)),
            create.is_some_and(|(_, _, p)| *p),
        ))
    }
}

/// `summary` of a room for `user`: joined and invited member counts, and heroes when the
/// room has neither a name nor a canonical alias (as Synapse: the joined, then the invited
/// members other than the user, in the order they got their membership, five at most; or
/// else the ones who left or were banned).
fn summary(room: &current_state::SummaryState, user: &str) -> Value {
    let members = &room.members;
    let joined = members.iter().filter(|(_, m)| m == "join").count();
    let invited = members.iter().filter(|(_, m)| m == "invite").count();
    let mut out = json!({
        "m.joined_member_count": joined,
        "m.invited_member_count": invited,
    });
    if room.named {
        return out;
    }
    let of = |wanted: &[&str]| -> Vec<&str> {
        members
            .iter()
            .filter(|(u, m)| u != user && wanted.contains(&m.as_str()))
            .map(|(u, _)| u.as_str())
            .collect()
    };
    let mut heroes = of(&["join"]);
    heroes.extend(of(&["invite"]));
    if heroes.is_empty() {
        heroes = of(&["leave", "ban"]);
    }
    heroes.truncate(5);
    out["m.heroes"] = json!(heroes);
    out
}

/// Full state for a timeline starting at `first`: the state before it, except where the
/// current holder of a piece of state is newer than that and the timeline does not show it
/// (a timeline filter dropped it): the client gets the current holder in `state`, since no
/// timeline event will bring it. With an unfiltered timeline nothing changes (every current
/// state event from `first` on is in the timeline).
fn with_unshown_current(
    before: Vec<RoomEvent>,
    current: &[RoomEvent],
    first: i64,
    shown: &HashSet<&str>,
) -> Vec<RoomEvent> {
    let key = |e: &RoomEvent| {
        (
            e.event_type.clone(),
            e.state_key.clone().unwrap_or_default(),
        )
    };
    let unshown: Vec<&RoomEvent> = current
        .iter()
        .filter(|e| e.position >= first && !shown.contains(e.event_id.as_str()))
        .collect();
    if unshown.is_empty() {
        return before;
    }
    let replaced: HashSet<(String, String)> = unshown.iter().map(|e| key(e)).collect();
    let mut out: Vec<RoomEvent> = before
        .into_iter()
        .filter(|e| !replaced.contains(&key(e)))
        .collect();
    out.extend(unshown.into_iter().cloned());
    out
}

/// The state of a room just before position `first`, from its current state: the pieces
/// unchanged since then, and for each piece changed at or after `first`, what its earliest
/// change there replaced. Reads only the state changes from `first` on.
async fn state_before(
    db: &impl Conn,
    room_id: &str,
    current: &[RoomEvent],
    first: i64,
    changes: Option<&[RoomEvent]>,
) -> Result<Vec<RoomEvent>, SyncApiError> {
    let key = |e: &RoomEvent| {
        (
            e.event_type.clone(),
            e.state_key.clone().unwrap_or_default(),
        )
    };
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut replaced = Vec::new();
    let read;
    let changes = match changes {
        Some(c) => c,
        None => {
            read = room_events::select_state_changes(db, room_id, first - 1, i64::MAX).await?;
            &read[..]
        }
    };
    for e in changes.iter().filter(|e| e.state_key.is_some()) {
        if seen.insert(key(e)) {
            replaced.extend(room_events::replaces_state(e));
        }
    }
    let mut out: Vec<RoomEvent> = current
        .iter()
        .filter(|e| e.position < first)
        .cloned()
        .collect();
    let have: HashSet<(String, String)> = out.iter().map(key).collect();
    if !replaced.is_empty() {
        out.extend(
            room_events::select_by_ids(db, &replaced)
                .await?
                .into_iter()
                .filter(|e| e.position < first && !have.contains(&key(e))),
        );
    }
    Ok(out)
}

/// The stripped state another server sent with a membership of ours in a room not held
/// here (`unsigned.<field>` of the event, `event_json`), without the user's own member
/// event, plus the event itself, stripped; `None` when the event carries none.
fn given_stripped_state(event_json: &str, field: &str, user: &str) -> Option<Vec<Value>> {
    let j: Value = serde_json::from_str(event_json).ok()?;
    let strip = |e: &Value| json!({"type": e["type"], "state_key": e["state_key"], "content": e["content"], "sender": e["sender"]});
    let given = j["unsigned"][field].as_array()?;
    let mut list: Vec<Value> = given
        .iter()
        .filter(|e| e["type"] != "m.room.member" || e["state_key"] != user)
        .map(strip)
        .collect();
    list.push(strip(&j));
    Some(list)
}
