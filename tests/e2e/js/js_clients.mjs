// Two matrix-js-sdk clients against a myelin homeserver, end to end.
//
// Usage: node js_clients.mjs HOMESERVER_URL [BOB_HOMESERVER_URL]
//
// With a second URL, bob is a user of that other homeserver and everything below goes over
// federation between the two (the invite, the join, messages, typing, receipts, names).
//
// Alice and bob register (m.login.dummy, through the sdk's registerRequest), each starts a
// MatrixClient (startClient, no crypto) and waits for the PREPARED sync state. Alice creates
// a private room and invites bob; bob sees the invite through the sdk's membership events and
// joins; each sees the other's display name (set before the room existed) on the other's
// member; they exchange messages (Room.timeline), and each sees the other's typing
// (RoomMember.typing) and read receipt (Room.receipt); alice changes her display name and bob
// sees it on her member in the room (RoomMember.name). Runs without end-to-end encryption
// (no initRustCrypto): myelin has no /keys endpoints yet.
//
// Every wait is bounded: STEP_MS per step, OVERALL_MS for the whole run. Exits 0 and prints a
// one-line summary on success; on failure prints the step, why, and the HTTP requests that
// failed during it on stderr, and exits 1. Every response that is not 2xx is logged on stderr
// as it happens; with JS_TRACE=1 every request is, and a list of the distinct endpoints each
// client called is printed at the end.
//
// The script is run from a directory whose node_modules holds the matrix-js-sdk pinned in
// package.json next to it (tests/e2e_js.rs copies it into its npm cache directory).

import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const SDK_VERSION = createRequire(import.meta.url)("matrix-js-sdk/package.json").version;
const STEP_MS = 20_000;
const OVERALL_MS = 120_000;
const POLL_MS = 25;
const PASSWORD = "correct horse battery staple";
const TRACE = !!process.env.JS_TRACE && process.env.JS_TRACE !== "0";

// The sdk logs at debug level by default; keep it to warnings and errors. Child loggers are
// separate loglevel loggers set to debug when made, so quiet them as they are made too.
function quiet(l) {
  l.setLevel("warn", false);
  const getChild = l.getChild.bind(l);
  l.getChild = (prefix) => quiet(getChild(prefix));
  return l;
}
quiet(logger);

class Failure extends Error {}

/** Every request made, and the ones that failed, as `{client, method, path, status, ...}`. */
const requests = [];
const failedRequests = [];
const started = Date.now();
let currentStep = "start";

/** Strips the host and any access_token query parameter from a URL, keeping the rest. */
function shortPath(url) {
  const u = new URL(url);
  u.searchParams.delete("access_token");
  const q = u.searchParams.toString();
  return u.pathname + (q ? `?${q}` : "");
}

/** A fetch for the sdk that records every request and logs the ones that are not 2xx. */
function tracingFetch(name) {
  return async (input, init = {}) => {
    const url = typeof input === "string" ? input : input.url ?? String(input);
    const method = (init.method ?? input.method ?? "GET").toUpperCase();
    const path = shortPath(url);
    const t0 = Date.now();
    const rec = { client: name, step: currentStep, method, path, status: null };
    requests.push(rec);
    let res;
    try {
      res = await fetch(input, init);
    } catch (e) {
      // stopClient aborts the long poll in flight: that is no failure.
      rec.status = e?.name === "AbortError" ? "aborted" : `error: ${e?.message ?? e}`;
      if (rec.status !== "aborted") {
        failedRequests.push(rec);
        console.error(`[http] ${name} ${method} ${path} -> ${rec.status}`);
      } else if (TRACE) {
        console.error(`[trace] ${name} ${method} ${path} -> aborted (${Date.now() - t0} ms)`);
      }
      throw e;
    }
    rec.status = res.status;
    if (!res.ok) {
      let body = "";
      try {
        body = (await res.clone().text()).slice(0, 500);
      } catch (e) {
        body = `(body unreadable: ${e})`;
      }
      rec.body = body;
      failedRequests.push(rec);
      console.error(`[http] ${name} ${method} ${path} -> ${res.status} ${body}`);
    } else if (TRACE) {
      console.error(`[trace] ${name} ${method} ${path} -> ${res.status} (${Date.now() - t0} ms)`);
    }
    return res;
  };
}

function describeError(e) {
  if (e instanceof sdk.MatrixError) {
    return `${e.httpStatus} ${e.errcode}: ${e.data?.error ?? e.message}`;
  }
  return e?.stack ?? String(e);
}

/** Joins `items` with " | ", each distinct one once, with a count when repeated. */
function counted(items) {
  const n = new Map();
  for (const i of items) n.set(i, (n.get(i) ?? 0) + 1);
  return [...n].map(([i, k]) => (k > 1 ? `${i} (x${k})` : i)).join(" | ");
}

/** Runs one step of the scenario; a failure names the step and the requests that failed in it. */
async function step(name, fn) {
  currentStep = name;
  try {
    return await fn();
  } catch (e) {
    const failed = failedRequests.filter((r) => r.step === name);
    const http = failed.length
      ? "; failed requests in this step: " +
        counted(failed.map((r) => `${r.client} ${r.method} ${r.path} -> ${r.status} ${r.body ?? ""}`.trim()))
      : "";
    const why = e instanceof Failure ? e.message : describeError(e);
    throw new Failure(`step "${name}": ${why}${http}`);
  }
}

/** Waits until `pred()` is truthy (checked every POLL_MS), at most `ms`; fails naming `what`. */
async function until(pred, what, detail = () => "", ms = STEP_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() >= deadline) {
      const d = detail();
      throw new Failure(`${what} not seen within ${ms} ms${d ? ` (${d})` : ""}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** One MatrixClient plus what its event listeners have seen so far. */
class Client {
  constructor(name, baseUrl) {
    this.name = name;
    this.baseUrl = baseUrl;
    this.fetchFn = tracingFetch(name);
    this.syncStates = []; // [state, error message or null]
    this.invites = new Set(); // room IDs this user's membership became "invite" in
    this.joins = []; // [roomId, userId] per member that became "join"
    this.messages = []; // {roomId, sender, body, eventId}
    this.typing = []; // [roomId, userId, typing]
    this.receipts = []; // {roomId, eventId, type, userId, ts, threadId}
    this.names = []; // [roomId, userId, name, content.displayname]
  }

  async register(username) {
    const anon = sdk.createClient({ baseUrl: this.baseUrl, fetchFn: this.fetchFn });
    const req = {
      username,
      password: PASSWORD,
      initial_device_display_name: `js-sdk ${this.name}`,
      auth: { type: "m.login.dummy" },
    };
    let resp;
    try {
      resp = await anon.registerRequest(req);
    } catch (e) {
      // A server may want the user-interactive session first: retry within it.
      const session = e?.data?.session;
      if (!(e instanceof sdk.MatrixError) || e.httpStatus !== 401 || !session) throw e;
      resp = await anon.registerRequest({ ...req, auth: { type: "m.login.dummy", session } });
    }
    if (!resp.access_token || !resp.user_id || !resp.device_id) {
      throw new Failure(`register answered without a session: ${JSON.stringify(resp)}`);
    }
    this.userId = resp.user_id;
    this.client = sdk.createClient({
      baseUrl: this.baseUrl,
      accessToken: resp.access_token,
      userId: resp.user_id,
      deviceId: resp.device_id,
      fetchFn: this.fetchFn,
    });
    this.listen();
    return resp.user_id;
  }

  listen() {
    const c = this.client;
    c.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      this.syncStates.push([state, data?.error ? describeError(data.error) : null]);
    });
    c.on(sdk.RoomMemberEvent.Membership, (_event, member) => {
      if (member.membership === sdk.KnownMembership.Invite && member.userId === this.userId) {
        this.invites.add(member.roomId);
      }
      if (member.membership === sdk.KnownMembership.Join) {
        this.joins.push([member.roomId, member.userId]);
      }
    });
    c.on(sdk.RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
      if (toStartOfTimeline || event.getType() !== sdk.EventType.RoomMessage) return;
      this.messages.push({
        roomId: room?.roomId,
        sender: event.getSender(),
        body: event.getContent().body,
        eventId: event.getId(),
      });
    });
    c.on(sdk.RoomMemberEvent.Typing, (_event, member) => {
      this.typing.push([member.roomId, member.userId, member.typing]);
    });
    c.on(sdk.RoomEvent.Receipt, (event, room) => {
      const content = event.getContent();
      for (const [eventId, byType] of Object.entries(content)) {
        for (const [type, byUser] of Object.entries(byType)) {
          for (const [userId, receipt] of Object.entries(byUser)) {
            this.receipts.push({ roomId: room.roomId, eventId, type, userId, ts: receipt.ts, threadId: receipt.thread_id });
          }
        }
      }
    });
    c.on(sdk.RoomMemberEvent.Name, (event, member) => {
      this.names.push([member.roomId, member.userId, member.name, event.getContent().displayname]);
    });
  }

  async start() {
    await this.client.startClient({ initialSyncLimit: 10 });
    await until(
      () => this.syncStates.some(([s]) => s === sdk.SyncState.Prepared),
      `${this.name}: sync state PREPARED`,
      () =>
        `sync states so far: ${counted(this.syncStates.map(([s, e]) => (e ? `${s} (${e})` : s))) || "none"}`,
    );
  }

  room(roomId) {
    return this.client.getRoom(roomId);
  }

  sawMessage(roomId, sender, body) {
    return this.messages.some((m) => m.roomId === roomId && m.sender === sender && m.body === body);
  }

  sawTyping(roomId, userId, typing) {
    return this.typing.some(([r, u, t]) => r === roomId && u === userId && t === typing);
  }

  receiptOf(roomId, userId, eventId) {
    return this.receipts.find(
      (r) =>
        r.roomId === roomId &&
        r.userId === userId &&
        r.eventId === eventId &&
        r.type === sdk.ReceiptType.Read &&
        typeof r.ts === "number",
    );
  }

  stop() {
    this.client?.stopClient();
  }
}

async function run(baseUrl, bobUrl) {
  const suffix = randomBytes(4).toString("hex");
  const alice = new Client("alice", baseUrl);
  const bob = new Client("bob", bobUrl);
  try {
    return await scenario(alice, bob, suffix);
  } finally {
    alice.stop();
    bob.stop();
  }
}

async function scenario(alice, bob, suffix) {
  const aId = await step("alice: register", () => alice.register(`alice_js_${suffix}`));
  const bId = await step("bob: register", () => bob.register(`bob_js_${suffix}`));

  await step("alice: startClient until PREPARED", () => alice.start());
  await step("bob: startClient until PREPARED", () => bob.start());

  const names = new Map([
    [aId, `Alice of ${suffix}`],
    [bId, `Bob of ${suffix}`],
  ]);
  for (const c of [alice, bob]) {
    await step(`${c.name}: setDisplayName`, () => c.client.setDisplayName(names.get(c.userId)));
  }

  const roomName = `js e2e ${suffix}`;
  const roomId = await step("alice: createRoom", async () => {
    const { room_id: id } = await alice.client.createRoom({
      visibility: sdk.Visibility.Private,
      preset: sdk.Preset.PrivateChat,
      name: roomName,
      topic: "matrix-js-sdk against myelin",
    });
    await until(() => alice.room(id)?.getMyMembership() === sdk.KnownMembership.Join, `alice: ${id} joined in her sync`);
    return id;
  });

  await step("alice: invite bob", () => alice.client.invite(roomId, bId));

  await step("bob: sees the invite", () =>
    until(
      () => bob.invites.has(roomId) && bob.room(roomId)?.getMyMembership() === sdk.KnownMembership.Invite,
      `bob's invite to ${roomId} (RoomMember.membership invite and the room's my-membership)`,
      () => `invites seen: ${JSON.stringify([...bob.invites])}; rooms: ${bob.client.getRooms().map((r) => `${r.roomId}:${r.getMyMembership()}`)}`,
    ),
  );

  await step("bob: join", async () => {
    const room = await bob.client.joinRoom(roomId);
    if (room.roomId !== roomId) throw new Failure(`joinRoom gave room ${room.roomId}, not ${roomId}`);
    await until(
      () => {
        const r = bob.room(roomId);
        return (
          r?.getMyMembership() === sdk.KnownMembership.Join &&
          r.name === roomName &&
          r.getMember(aId)?.membership === sdk.KnownMembership.Join
        );
      },
      `bob: ${roomId} joined, named ${JSON.stringify(roomName)}, with alice joined`,
      () => {
        const r = bob.room(roomId);
        return `my membership ${r?.getMyMembership()}, name ${JSON.stringify(r?.name)}, alice ${r?.getMember(aId)?.membership}`;
      },
    );
  });

  await step("alice: sees bob join", () =>
    until(
      () =>
        alice.joins.some(([r, u]) => r === roomId && u === bId) &&
        alice.room(roomId)?.getMember(bId)?.membership === sdk.KnownMembership.Join,
      `bob's join in ${roomId} (RoomMember.membership join)`,
    ),
  );

  // Each member event carries its user's display name, and the other side shows it.
  for (const [viewer, of] of [
    [alice, bId],
    [bob, aId],
  ]) {
    await step(`${viewer.name}: sees the other's display name`, () =>
      until(
        () => {
          const m = viewer.room(roomId)?.getMember(of);
          return m?.name === names.get(of) && m?.events.member?.getContent().displayname === names.get(of);
        },
        `${viewer.name}: ${of}'s member named ${JSON.stringify(names.get(of))}`,
        () => {
          const m = viewer.room(roomId)?.getMember(of);
          return `name ${JSON.stringify(m?.name)}, content ${JSON.stringify(m?.events.member?.getContent())}`;
        },
      ),
    );
  }

  const hello = `hello bob (${suffix})`;
  const aliceEvent = await step("alice: send a message, bob sees it", async () => {
    const { event_id: id } = await alice.client.sendTextMessage(roomId, hello);
    await until(() => bob.sawMessage(roomId, aId, hello), `bob: alice's message ${JSON.stringify(hello)} (Room.timeline)`);
    const seen = bob.messages.find((m) => m.body === hello);
    if (seen.eventId !== id) throw new Failure(`bob got ${hello} as ${seen.eventId}, alice sent ${id}`);
    return id;
  });

  const reply = `hi alice (${suffix})`;
  const bobEvent = await step("bob: send a message, alice sees it", async () => {
    const { event_id: id } = await bob.client.sendTextMessage(roomId, reply);
    await until(() => alice.sawMessage(roomId, bId, reply), `alice: bob's message ${JSON.stringify(reply)} (Room.timeline)`);
    const seen = alice.messages.find((m) => m.body === reply);
    if (seen.eventId !== id) throw new Failure(`alice got ${reply} as ${seen.eventId}, bob sent ${id}`);
    return id;
  });

  await step("own messages come back through sync", async () => {
    for (const [c, id] of [
      [alice, aliceEvent],
      [bob, bobEvent],
    ]) {
      // The local echo's status turns null when the remote echo arrives through /sync.
      await until(
        () => {
          const ev = c.room(roomId)?.findEventById(id);
          return ev && ev.status === null;
        },
        `${c.name}: the remote echo of ${id}`,
        () => `status ${c.room(roomId)?.findEventById(id)?.status}`,
      );
    }
  });

  for (const [from, to, fromId] of [
    [alice, bob, aId],
    [bob, alice, bId],
  ]) {
    await step(`${from.name}: typing on, ${to.name} sees it`, async () => {
      await from.client.sendTyping(roomId, true, 30_000);
      await until(
        () => to.sawTyping(roomId, fromId, true) && to.room(roomId)?.getMember(fromId)?.typing === true,
        `${to.name}: ${from.name} typing (RoomMember.typing)`,
      );
    });
    await step(`${from.name}: typing off, ${to.name} sees it`, async () => {
      await from.client.sendTyping(roomId, false, 0);
      await until(
        () => to.sawTyping(roomId, fromId, false) && to.room(roomId)?.getMember(fromId)?.typing === false,
        `${to.name}: ${from.name} no longer typing (RoomMember.typing)`,
      );
    });
  }

  // Bob's receipt through /read_markers (m.read plus m.fully_read), alice's through /receipt.
  // Each is on the other's message, so neither can be a synthesized one for a sender.
  await step("bob: read markers, alice sees his receipt", async () => {
    const ev = bob.room(roomId).findEventById(aliceEvent);
    if (!ev) throw new Failure(`bob has no event ${aliceEvent} in his timeline`);
    await bob.client.setRoomReadMarkers(roomId, aliceEvent, ev);
    await until(
      () => alice.receiptOf(roomId, bId, aliceEvent),
      `alice: bob's m.read receipt on ${aliceEvent} (Room.receipt)`,
      () => `receipts seen: ${JSON.stringify(alice.receipts)}`,
    );
  });

  await step("alice: sendReadReceipt, bob sees it", async () => {
    const ev = alice.room(roomId).findEventById(bobEvent);
    if (!ev) throw new Failure(`alice has no event ${bobEvent} in her timeline`);
    await alice.client.sendReadReceipt(ev, sdk.ReceiptType.Read);
    await until(
      () => bob.receiptOf(roomId, aId, bobEvent),
      `bob: alice's m.read receipt on ${bobEvent} (Room.receipt)`,
      () => `receipts seen: ${JSON.stringify(bob.receipts)}`,
    );
  });

  const newName = `Alice ${suffix}`;
  await step("alice: setDisplayName, bob sees it in the room", async () => {
    await alice.client.setDisplayName(newName);
    await until(
      () =>
        bob.room(roomId)?.getMember(aId)?.name === newName &&
        bob.room(roomId)?.currentState.getStateEvents(sdk.EventType.RoomMember, aId)?.getContent().displayname ===
          newName &&
        bob.names.some(([r, u, n]) => r === roomId && u === aId && n === newName),
      `bob: alice's member in ${roomId} named ${JSON.stringify(newName)} (RoomMember.name, content.displayname)`,
      () => {
        const m = bob.room(roomId)?.getMember(aId);
        return `alice's member: name ${JSON.stringify(m?.name)}, content ${JSON.stringify(m?.events.member?.getContent())}`;
      },
    );
  });

  return { roomId, aId, bId, events: [aliceEvent, bobEvent], newName };
}

function endpointSummary() {
  const seen = new Map();
  for (const r of requests) {
    const key = `${r.client} ${r.method} ${r.path.replace(/\?.*/, "")} -> ${r.status}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return [...seen].map(([k, n]) => `  ${k}${n > 1 ? ` (x${n})` : ""}`).join("\n");
}

async function main() {
  if (process.argv.length !== 3 && process.argv.length !== 4) {
    console.error("usage: node js_clients.mjs HOMESERVER_URL [BOB_HOMESERVER_URL]");
    process.exit(2);
  }
  const baseUrl = process.argv[2];
  const bobUrl = process.argv[3] ?? baseUrl;
  let timer;
  const overall = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Failure(`not done within ${OVERALL_MS} ms (at step "${currentStep}")`)),
      OVERALL_MS,
    );
  });
  let code = 0;
  try {
    const s = await Promise.race([run(baseUrl, bobUrl), overall]);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    console.log(
      `matrix-js-sdk ${SDK_VERSION} e2e ok against ${baseUrl === bobUrl ? baseUrl : `${baseUrl} and ${bobUrl}`} in ${secs} s: ${s.aId} and ${s.bId} in ${s.roomId}; ` +
        `messages ${s.events.join(", ")} delivered both ways; typing on and off both ways, read receipts ` +
        `(read_markers and receipt) and alice's new display name ${JSON.stringify(s.newName)} seen; ` +
        `${requests.length} requests`,
    );
  } catch (e) {
    console.error(`matrix-js-sdk ${SDK_VERSION} e2e FAILED against ${baseUrl}: ${e instanceof Failure ? e.message : describeError(e)}`);
    code = 1;
  } finally {
    clearTimeout(timer);
  }
  if (TRACE) console.error(`[trace] endpoints called (client method path -> status):\n${endpointSummary()}`);
  process.exit(code);
}

main();
