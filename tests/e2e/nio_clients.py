#!/usr/bin/env python3
"""Two matrix-nio clients against a myelin homeserver, end to end.

Usage: nio_clients.py HOMESERVER_URL

Alice and bob register (m.login.dummy), alice creates a private room and invites bob, bob
sees the invite through /sync and joins, they exchange messages, and each sees the other's
message, typing notice and read receipt through /sync, as nio parses them; then alice changes
her display name and bob sees her room member event carry it. Runs without
end-to-end encryption (no python-olm): myelin has no /keys endpoints yet.

Every wait is bounded: at most MAX_SYNCS syncs of SYNC_TIMEOUT_MS each per step, and
OVERALL_SECS for the whole run. Exits 0 and prints a summary on success; on any failure
prints what went wrong on stderr and exits 1.
"""

import asyncio
import secrets
import sys
import time

from nio import (
    AsyncClient,
    AsyncClientConfig,
    BadEvent,
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    ProfileSetDisplayNameResponse,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMemberEvent,
    RoomMessageText,
    RoomPreset,
    RoomReadMarkersResponse,
    RoomSendResponse,
    RoomTypingResponse,
    RoomVisibility,
    SyncResponse,
    TypingNoticeEvent,
    UnknownBadEvent,
    UpdateReceiptMarkerResponse,
)
from nio.api import ReceiptType

SYNC_TIMEOUT_MS = 2000
MAX_SYNCS = 15
OVERALL_SECS = 90
PASSWORD = "correct horse battery staple"


class Failure(Exception):
    """A step of the scenario went wrong; the message says which and why."""


def expect(response, kind, what):
    """Returns `response` if it is a `kind`, else fails with what the server answered."""
    if isinstance(response, kind):
        return response
    detail = repr(response)
    if isinstance(response, ErrorResponse):
        detail = (
            f"{type(response).__name__}: status_code={response.status_code!r} "
            f"message={response.message!r}"
        )
    raise Failure(f"{what}: expected {kind.__name__}, got {detail}")


def is_read(receipt):
    """Whether a parsed receipt is a public read receipt (nio keeps the type as parsed)."""
    t = receipt.receipt_type
    return (t.value if isinstance(t, ReceiptType) else t) == ReceiptType.read.value


class Client:
    """One nio client plus what its callbacks have seen so far."""

    def __init__(self, name, homeserver):
        config = AsyncClientConfig(
            encryption_enabled=False,
            store_sync_tokens=False,
            max_timeouts=2,
            max_limit_exceeded=2,
            request_timeout=30,
        )
        self.name = name
        self.nio = AsyncClient(homeserver, config=config)
        self.messages = []  # (room_id, sender, body, event_id)
        self.invites = set()  # room IDs this user was invited to
        self.typing = []  # (room_id, [user_ids]) per m.typing seen
        self.receipts = []  # (room_id, Receipt) per receipt seen
        self.members = []  # (room_id, state_key, membership, displayname) per m.room.member
        self.bad_events = []  # events nio could not validate
        self.syncs = 0
        self.nio.add_event_callback(self._on_message, RoomMessageText)
        self.nio.add_event_callback(self._on_invite, InviteMemberEvent)
        self.nio.add_event_callback(self._on_member, RoomMemberEvent)
        self.nio.add_event_callback(self._on_bad, (BadEvent, UnknownBadEvent))
        self.nio.add_ephemeral_callback(self._on_typing, TypingNoticeEvent)
        self.nio.add_ephemeral_callback(self._on_receipt, ReceiptEvent)

    async def _on_message(self, room, event):
        self.messages.append((room.room_id, event.sender, event.body, event.event_id))

    async def _on_invite(self, room, event):
        if event.state_key == self.nio.user_id and event.membership == "invite":
            self.invites.add(room.room_id)

    async def _on_member(self, room, event):
        self.members.append(
            (room.room_id, event.state_key, event.membership, event.content.get("displayname"))
        )

    async def _on_bad(self, room, event):
        self.bad_events.append((room.room_id, event.source))

    async def _on_typing(self, room, event):
        self.typing.append((room.room_id, list(event.users)))

    async def _on_receipt(self, room, event):
        for receipt in event.receipts:
            self.receipts.append((room.room_id, receipt))

    async def register(self, username):
        resp = await self.nio.register(username, PASSWORD, device_name=f"nio {self.name}")
        expect(resp, RegisterResponse, f"{self.name}: register {username}")
        if not self.nio.access_token or self.nio.user_id != resp.user_id:
            raise Failure(f"{self.name}: nio did not take the session from {resp!r}")
        return resp.user_id

    async def sync_until(self, predicate, what, detail=None):
        """Syncs (long polling) until `predicate()` holds, at most MAX_SYNCS times.

        `detail()`, if given, says what was seen instead when it never holds.
        """
        for _ in range(MAX_SYNCS):
            if predicate():
                return
            resp = await self.nio.sync(timeout=SYNC_TIMEOUT_MS)
            expect(resp, SyncResponse, f"{self.name}: sync while waiting for {what}")
            self.syncs += 1
        if not predicate():
            seen = f"; {detail()}" if detail else ""
            raise Failure(
                f"{self.name}: {what} not seen after {MAX_SYNCS} syncs of "
                f"{SYNC_TIMEOUT_MS} ms (next_batch={self.nio.next_batch!r}{seen})"
            )

    def saw_message(self, room_id, sender, body):
        return any(
            (r, s, b) == (room_id, sender, body) for (r, s, b, _) in self.messages
        )


async def scenario(homeserver):
    suffix = secrets.token_hex(4)
    alice = Client("alice", homeserver)
    bob = Client("bob", homeserver)
    try:
        return await run(alice, bob, suffix)
    finally:
        await alice.nio.close()
        await bob.nio.close()


async def run(alice, bob, suffix):
    a_id = await alice.register(f"alice_{suffix}")
    b_id = await bob.register(f"bob_{suffix}")

    # Both start with an initial sync, so what follows arrives incrementally.
    for c in (alice, bob):
        resp = expect(await c.nio.sync(timeout=0, full_state=True), SyncResponse,
                      f"{c.name}: initial sync")
        c.syncs += 1
        if not resp.next_batch:
            raise Failure(f"{c.name}: initial sync has no next_batch: {resp!r}")

    created = expect(
        await alice.nio.room_create(
            visibility=RoomVisibility.private,
            name=f"nio e2e {suffix}",
            topic="matrix-nio against myelin",
            preset=RoomPreset.private_chat,
        ),
        RoomCreateResponse,
        "alice: createRoom",
    )
    room_id = created.room_id
    expect(await alice.nio.room_invite(room_id, b_id), RoomInviteResponse,
           "alice: invite bob")

    # Bob sees the invite in rooms.invite and joins.
    await bob.sync_until(
        lambda: room_id in bob.nio.invited_rooms and room_id in bob.invites,
        f"the invite to {room_id} (rooms.invite, with bob's m.room.member invite)",
    )
    joined = expect(await bob.nio.join(room_id), JoinResponse, "bob: join")
    if joined.room_id != room_id:
        raise Failure(f"bob: join answered room_id {joined.room_id!r}, not {room_id!r}")
    # Bob's sync brings the room's state, the name and alice's membership among it.
    await bob.sync_until(
        lambda: room_id in bob.nio.rooms
        and bob.nio.rooms[room_id].name == f"nio e2e {suffix}"
        and a_id in bob.nio.rooms[room_id].users,
        f"{room_id} in rooms.join with its name and alice",
    )

    # Alice sees bob join.
    await alice.sync_until(
        lambda: room_id in alice.nio.rooms and b_id in alice.nio.rooms[room_id].users,
        f"bob's join in {room_id}",
    )

    # Messages, both ways.
    hello = f"hello bob ({suffix})"
    sent = expect(
        await alice.nio.room_send(room_id, "m.room.message",
                                  {"msgtype": "m.text", "body": hello}),
        RoomSendResponse,
        "alice: send",
    )
    alice_event = sent.event_id
    await bob.sync_until(lambda: bob.saw_message(room_id, a_id, hello),
                         f"alice's message {hello!r}")
    reply = f"hi alice ({suffix})"
    sent = expect(
        await bob.nio.room_send(room_id, "m.room.message",
                                {"msgtype": "m.text", "body": reply}),
        RoomSendResponse,
        "bob: send",
    )
    bob_event = sent.event_id
    await alice.sync_until(lambda: alice.saw_message(room_id, b_id, reply),
                           f"bob's message {reply!r}")
    # Each also sees its own message come back, with the event ID the send returned.
    for c, body, event_id in ((alice, hello, alice_event), (bob, reply, bob_event)):
        await c.sync_until(
            lambda c=c, body=body, event_id=event_id: any(
                m[2] == body and m[3] == event_id for m in c.messages
            ),
            f"its own message {body!r} as {event_id}",
        )

    # Typing: alice starts, bob sees her in typing_users; alice stops, bob sees nobody.
    expect(await alice.nio.room_typing(room_id, True, timeout=30000), RoomTypingResponse,
           "alice: typing on")
    await bob.sync_until(lambda: a_id in bob.nio.rooms[room_id].typing_users,
                         "alice in m.typing")
    if not any(r == room_id and a_id in users for (r, users) in bob.typing):
        raise Failure("bob: typing_users has alice but no TypingNoticeEvent came in")
    expect(await alice.nio.room_typing(room_id, False), RoomTypingResponse,
           "alice: typing off")
    await bob.sync_until(lambda: a_id not in bob.nio.rooms[room_id].typing_users,
                         "alice leaving m.typing")

    # Read receipts: bob through read_markers (unthreaded m.read, plus m.fully_read) ...
    expect(
        await bob.nio.room_read_markers(room_id, fully_read_event=alice_event,
                                        read_event=alice_event),
        RoomReadMarkersResponse,
        "bob: read_markers",
    )
    await alice.sync_until(
        lambda: (r := alice.nio.rooms[room_id].read_receipts.get(b_id)) is not None
        and r.event_id == alice_event
        and is_read(r),
        f"bob's m.read receipt on {alice_event}",
    )
    # ... and alice through /receipt, on the main thread.
    expect(
        await alice.nio.update_receipt_marker(room_id, bob_event, ReceiptType.read, "main"),
        UpdateReceiptMarkerResponse,
        "alice: receipt",
    )
    await bob.sync_until(
        lambda: (
            r := bob.nio.rooms[room_id].threaded_read_receipts.get(a_id, {}).get("main")
        ) is not None
        and r.event_id == bob_event
        and is_read(r),
        f"alice's m.read receipt on {bob_event} in thread main",
    )
    if not any(r == room_id and rc.user_id == a_id for (r, rc) in bob.receipts):
        raise Failure("bob: threaded_read_receipts has alice but no ReceiptEvent came in")

    # Display name: alice changes hers, and bob's sync brings her new m.room.member event.
    new_name = f"Alice {suffix}"
    expect(await alice.nio.set_displayname(new_name), ProfileSetDisplayNameResponse,
           "alice: set_displayname")
    await bob.sync_until(
        lambda: bob.nio.rooms[room_id].user_name(a_id) == new_name
        and (room_id, a_id, "join", new_name) in bob.members,
        f"alice's m.room.member event in {room_id} with displayname {new_name!r}",
        lambda: f"alice's name in the room {bob.nio.rooms[room_id].user_name(a_id)!r}, "
        f"her member events {[m for m in bob.members if m[1] == a_id]!r}",
    )

    # nio validates every event against its schemas: none of myelin's may fail that.
    for c in (alice, bob):
        if c.bad_events:
            raise Failure(f"{c.name}: events nio could not validate: {c.bad_events!r}")

    return {
        "room_id": room_id,
        "alice": a_id,
        "bob": b_id,
        "messages": [alice_event, bob_event],
        "syncs": alice.syncs + bob.syncs,
        "new_name": new_name,
    }


def main():
    if len(sys.argv) != 2:
        print("usage: nio_clients.py HOMESERVER_URL", file=sys.stderr)
        sys.exit(2)
    homeserver = sys.argv[1]
    started = time.monotonic()
    try:
        summary = asyncio.run(asyncio.wait_for(scenario(homeserver), OVERALL_SECS))
    except Failure as e:
        print(f"nio e2e FAILED against {homeserver}: {e}", file=sys.stderr)
        sys.exit(1)
    except (asyncio.TimeoutError, TimeoutError):
        print(f"nio e2e FAILED against {homeserver}: not done within {OVERALL_SECS} s",
              file=sys.stderr)
        sys.exit(1)
    elapsed = time.monotonic() - started
    print(
        f"nio e2e ok against {homeserver} in {elapsed:.1f} s: {summary['alice']} and "
        f"{summary['bob']} in {summary['room_id']}; messages {summary['messages']} "
        f"delivered both ways; typing on and off, read receipts (unthreaded and "
        f"thread main) and alice's new display name {summary['new_name']!r} seen through "
        f"{summary['syncs']} syncs"
    )


if __name__ == "__main__":
    main()
