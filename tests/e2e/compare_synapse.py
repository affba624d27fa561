#!/usr/bin/env python3
"""Sends the same client-API requests to myelin and to Synapse and compares the answers.

Usage: compare_synapse.py --myelin URL SERVER_NAME --synapse URL SERVER_NAME

"Synapse is the yardstick": where the spec leaves room, myelin does what Synapse does. This
script runs one scripted sequence of requests against each server (fresh users registered with
m.login.dummy on each, with a random prefix per run, so it can run again against the same
Synapse), substituting each server's own user IDs, room IDs, event IDs and tokens into the
later requests, and compares what came back:

* the HTTP status and the `errcode`, always;
* the JSON shape: the key sets of every object and the type of every value, recursively, and
  the length of every list; values themselves are not compared by default, so what is
  naturally server-specific (IDs, tokens, timestamps, `error` texts, `next_batch`,
  `unsigned.age`, device IDs, session IDs, `origin_server_ts`) never counts;
* values, where a check names them as `exact` (push rules: rule IDs, their order, actions
  and conditions; registration flows; the content of state events; ...), after replacing
  each server's name, the run's random user prefix and every remembered ID with the same
  placeholder on both sides;
* derived facts a check computes from several answers (e.g. "the second identical state
  event got the first one's event ID"), compared exactly.

It prints one line per check and, when anything differs, every difference with both answers,
and exits 1. A difference listed in ALLOWED (deliberate) or KNOWN_DIFFERENCES (myelin must be
fixed) with exactly the answers seen does not fail the run; a KNOWN_DIFFERENCES entry that no
longer occurs does, so the list shrinks as myelin is fixed. Every request has a timeout and
the whole run is bounded by OVERALL_SECS.
"""

import argparse
import fnmatch
import json
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

OVERALL_SECS = 150
REQUEST_TIMEOUT = 20
PASSWORD = "correct horse battery staple"
# Rooms are made with an explicit version, the same on both servers (myelin's default is 12,
# Synapse's 10; the /capabilities check compares the defaults), so that state and event
# shapes compare like for like.
ROOM_VERSION = "12"

# Deliberate differences: myelin answers otherwise on purpose. Keep this minimal; each entry
# says why. Same format as KNOWN_DIFFERENCES.
ALLOWED = [
    # Synapse still adds the legacy (pre-r0, not in the spec's ClientEvent) top-level `age` and
    # `user_id` to the events it serves; the spec's places for them are `unsigned.age` and
    # `sender`, which myelin fills. No client needs the legacy copies.
    *[{"check": "*", "path": f"{where}{key}", "what": "absent in myelin", "myelin": None,
       "synapse": kind}
      for where in ("", "[0-9]*/", "chunk/*/")
      for key, kind in (("age", "number"), ("user_id", "string"))],
    # GET /profile/{userId} of a user that does not exist: Synapse leaks an internal store
    # error (404 M_UNKNOWN "No row found (profiles)"); myelin answers the spec's 404
    # M_NOT_FOUND. The status is the same.
    {"check": "profile_unknown_user", "path": "errcode", "what": "value",
     "myelin": "M_NOT_FOUND", "synapse": "M_UNKNOWN"},
    # /versions: myelin claims only the versions whose endpoints it serves; v1.13 to v1.15
    # bring endpoints not built yet.
    {"check": "versions", "path": "versions", "what": "value",
     "myelin": ['r0.0.1', 'r0.1.0', 'r0.2.0', 'r0.3.0', 'r0.4.0', 'r0.5.0', 'r0.6.0', 'r0.6.1', 'v1.1', 'v1.2', 'v1.3', 'v1.4', 'v1.5', 'v1.6', 'v1.7', 'v1.8', 'v1.9', 'v1.10', 'v1.11', 'v1.12'], "synapse": ['r0.0.1', 'r0.1.0', 'r0.2.0', 'r0.3.0', 'r0.4.0', 'r0.5.0', 'r0.6.0', 'r0.6.1', 'v1.1', 'v1.2', 'v1.3', 'v1.4', 'v1.5', 'v1.6', 'v1.7', 'v1.8', 'v1.9', 'v1.10', 'v1.11', 'v1.12', 'v1.13', 'v1.14', 'v1.15']},
    # /capabilities: myelin does not advertise what it does not do (extended profile fields,
    # delayed events, third-party identifier changes).
    {"check": "capabilities", "path": "capabilities/m.profile_fields", "what": "absent in myelin",
     "myelin": None, "synapse": 'object'},
    {"check": "capabilities", "path": "capabilities/org.matrix.msc4140.delayed_events", "what": "absent in myelin",
     "myelin": None, "synapse": 'object'},
    {"check": "capabilities", "path": "capabilities/m.3pid_changes/enabled", "what": "value",
     "myelin": False, "synapse": True},
]

# Differences found that myelin must fix: each entry is one difference exactly as this script
# reports it (check, path, what, and both answers after normalization). While an entry matches
# it does not fail the run; once myelin answers as Synapse does, the entry is reported as
# stale and fails the run until it is deleted here.
KNOWN_DIFFERENCES = [
    # GET /_matrix/client/versions: no unstable_features map yet.
    {"check": "versions", "path": "unstable_features", "what": "absent in myelin",
     "myelin": None, "synapse": 'object'},
    # GET /login: appservice login comes with the appservice component.
    {"check": "login_flows", "path": "flows", "what": "value",
     "myelin": [{'type': 'm.login.password'}], "synapse": [{'type': 'm.login.password'}, {'type': 'm.login.application_service'}]},
    # Push rule bodies ruma's parser refuses (unknown kind, content rule without pattern, rule
    # without actions, enabled not a boolean): myelin's parse errors, Synapse's M_UNKNOWN.
    {"check": "pushrules_put_*", "path": "errcode", "what": "value",
     "myelin": 'M_INVALID_PARAM', "synapse": 'M_UNKNOWN'},
    {"check": "pushrules_put_content_no_pattern", "path": "errcode", "what": "value",
     "myelin": 'M_BAD_JSON', "synapse": 'M_UNKNOWN'},
    {"check": "pushrules_put_no_actions", "path": "errcode", "what": "value",
     "myelin": 'M_BAD_JSON', "synapse": 'M_UNKNOWN'},
    {"check": "pushrules_enabled_bad", "path": "errcode", "what": "value",
     "myelin": 'M_BAD_JSON', "synapse": 'M_UNKNOWN'},
    # GET /state after createRoom (public_chat, v12): default power levels.
    {"check": "create_room_state", "path": "*/content/notifications", "what": "absent in synapse",
     "myelin": 'object', "synapse": None},
    {"check": "create_room_state", "path": "*/content/historical", "what": "absent in myelin",
     "myelin": None, "synapse": 'number'},
    {"check": "create_room_state", "path": "*/content/events/m.call.invite", "what": "absent in myelin",
     "myelin": None, "synapse": 'number'},
    # GET /state/m.room.topic?format=event: unsigned.replaces_state.
    {"check": "state_get_format_event", "path": "unsigned/replaces_state", "what": "absent in myelin",
     "myelin": None, "synapse": 'string'},
    # unsigned.membership (MSC4115, spec v1.11) on /messages and /event.
    {"check": "messages_backward_*", "path": "chunk/*/unsigned/membership", "what": "absent in myelin",
     "myelin": None, "synapse": 'string'},
    {"check": "event_member", "path": "unsigned/membership", "what": "absent in myelin",
     "myelin": None, "synapse": 'string'},
]


class Failure(Exception):
    """The script itself cannot go on (a request that must succeed did not)."""


# --- HTTP --------------------------------------------------------------------------------


def q(value):
    """Quotes one path segment."""
    return urllib.parse.quote(value, safe="")


class Server:
    def __init__(self, label, base, name, prefix):
        self.label = label
        self.base = base.rstrip("/")
        self.name = name
        self.prefix = prefix
        # actual string -> placeholder, applied to every answer before comparing
        self.subst = {}
        self.deadline = time.monotonic() + OVERALL_SECS

    def remember(self, actual, placeholder):
        if isinstance(actual, str) and actual:
            self.subst[actual] = placeholder
        return actual

    def call(self, method, path, body=None, token=None, query=None, raw=None):
        if time.monotonic() > self.deadline:
            raise Failure(f"{self.label}: the run took longer than {OVERALL_SECS}s")
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise Failure(f"{self.label}: {method} {path}: {e}") from e
        if not payload:
            return status, None
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, {"<not JSON>": payload[:200].decode("utf-8", "replace")}

    def normalize(self, value):
        """Replaces remembered IDs, the random prefix and the server name by placeholders."""
        pairs = sorted(self.subst.items(), key=lambda kv: -len(kv[0]))
        pairs += [(self.prefix, "PREFIX-"), (self.name, "SERVER")]

        def fix(s):
            for actual, placeholder in pairs:
                if actual in s:
                    s = s.replace(actual, placeholder)
            return s

        def walk(v):
            if isinstance(v, str):
                return fix(v)
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, dict):
                return {fix(k): walk(x) for k, x in v.items()}
            return v

        return walk(value)


# --- recording and comparing -------------------------------------------------------------


class Check:
    def __init__(self, name, status, body, exact=(), opaque=(), ignore=(), derived=False):
        self.name = name
        self.status = status
        self.body = body
        self.exact = tuple(exact)
        self.opaque = tuple(opaque)
        self.ignore = tuple(ignore)
        self.derived = derived


class Recorder:
    def __init__(self, server):
        self.server = server
        self.checks = {}

    def check(self, name, answer, exact=(), opaque=(), ignore=()):
        """Records one answer (status, body); returns the raw body for the next steps."""
        status, body = answer
        if name in self.checks:
            raise Failure(f"check {name} recorded twice")
        self.checks[name] = Check(
            name, status, self.server.normalize(body), exact, opaque, ignore
        )
        return body

    def fact(self, name, value):
        """Records a derived fact, compared exactly."""
        self.checks[name] = Check(name, None, self.server.normalize(value), derived=True)


def type_name(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "object"


def path_matches(path, pattern):
    """Segment-wise glob: `chunk/*/age` matches `chunk/3/age`, not `chunk/3/unsigned/age`."""
    a, b = path.split("/"), pattern.split("/")
    return len(a) == len(b) and all(fnmatch.fnmatchcase(x, y) for x, y in zip(a, b))


def matches(path, patterns):
    return any(path_matches(path, p) for p in patterns)


def compare_values(check, path, m, s, out, exact=False):
    """Appends (path, what, myelin, synapse) for every difference under `path`.

    A key present on one side only is one difference each ("absent in myelin" or "absent in
    synapse", with the type of the value on the side that has it). Under an `exact` pattern
    scalars and lists compare by value, but lists of push rules compare their rule IDs in
    order ("rule order", at `path`) and then each rule by ID; elsewhere lists compare their
    length and then element by element.
    """
    if matches(path, check.ignore):
        return
    exact = exact or matches(path, check.exact) or path == "errcode"
    if type_name(m) != type_name(s):
        out.append((path, "type", type_name(m), type_name(s)))
        return
    if not exact and matches(path, check.opaque):
        return
    join = (lambda k: f"{path}/{k}") if path else str
    if isinstance(m, dict):
        for k in sorted(set(m) - set(s)):
            out.append((join(k), "absent in synapse", type_name(m[k]), None))
        for k in sorted(set(s) - set(m)):
            out.append((join(k), "absent in myelin", None, type_name(s[k])))
        for k in sorted(set(m) & set(s)):
            compare_values(check, join(k), m[k], s[k], out, exact)
    elif isinstance(m, list):
        rules = [x for x in m + s if isinstance(x, dict) and "rule_id" in x]
        if exact and rules:
            ids_m = [x.get("rule_id") for x in m if isinstance(x, dict)]
            ids_s = [x.get("rule_id") for x in s if isinstance(x, dict)]
            if ids_m != ids_s:
                out.append((path, "rule order", ids_m, ids_s))
            by_id = {x.get("rule_id"): x for x in s if isinstance(x, dict)}
            for x in m:
                if isinstance(x, dict) and x.get("rule_id") in by_id:
                    compare_values(check, join(x["rule_id"]), x, by_id[x["rule_id"]], out, exact)
        elif exact:
            if m != s:
                out.append((path, "value", m, s))
        else:
            if len(m) != len(s):
                out.append((path, "length", len(m), len(s)))
            for i, (a, b) in enumerate(zip(m, s)):
                compare_values(check, join(i), a, b, out, exact)
    elif exact and m != s:
        out.append((path, "value", m, s))


def compare(mine, theirs):
    """Yields (check, path, what, myelin, synapse) for every difference."""
    names = list(theirs.checks)
    names += [n for n in mine.checks if n not in theirs.checks]
    for name in names:
        m, s = mine.checks.get(name), theirs.checks.get(name)
        if m is None or s is None:
            yield (name, "", "missing", m is not None, s is not None)
            continue
        if m.derived:
            if m.body != s.body:
                yield (name, "", "value", m.body, s.body)
            continue
        if m.status != s.status:
            yield (name, "", "status", m.status, s.status)
        diffs = []
        compare_values(s, "", m.body, s.body, diffs)
        for path, what, a, b in diffs:
            yield (name, path, what, a, b)


def entry_matches(entry, diff):
    check, path, what, m, s = diff
    return (
        fnmatch.fnmatchcase(check, entry["check"])
        and path_matches(path, entry["path"])
        and entry["what"] == what
        and entry["myelin"] == m
        and entry["synapse"] == s
    )


# --- the scenario ------------------------------------------------------------------------

C = "/_matrix/client/v3"


def register(s, localpart, **extra):
    """Registers with m.login.dummy (retrying once with the session of a 401)."""
    body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    body.update(extra)
    status, answer = s.call("POST", f"{C}/register", body)
    if status == 401 and isinstance(answer, dict) and "session" in answer:
        body["auth"]["session"] = answer["session"]
        status, answer = s.call("POST", f"{C}/register", body)
    if status != 200:
        raise Failure(f"{s.label}: registering {localpart}: {status} {answer}")
    return answer


def need(s, what, answer, status=200):
    if answer[0] != status:
        raise Failure(f"{s.label}: {what}: expected {status}, got {answer[0]} {answer[1]}")
    return answer[1]


def by_type(answer):
    """A /state answer with its events in (type, state_key) order: the order is free."""
    status, body = answer
    if isinstance(body, list):
        body = sorted(body, key=lambda e: (str(e.get("type")), str(e.get("state_key"))))
    return status, body


def override_ids(answer):
    """The rule IDs of the override rules in a GET /pushrules/ answer, in order."""
    status, body = answer
    try:
        return [r["rule_id"] for r in body["global"]["override"]]
    except (KeyError, TypeError):
        return [status, body]


def scenario(s, rec):
    p = s.prefix
    ok = rec.check

    # Start-up endpoints.
    ok("versions", s.call("GET", "/_matrix/client/versions"), exact=["versions"],
       opaque=["unstable_features"])
    ok("login_flows", s.call("GET", f"{C}/login"), exact=["flows"])
    ok("unknown_endpoint", s.call("GET", f"{C}/no/such/endpoint"))

    # Registration with user-interactive auth.
    alice_lp = p + "alice"
    ok("register_available", s.call("GET", f"{C}/register/available",
                                     query={"username": alice_lp}), exact=["available"])
    first = {"username": alice_lp, "password": PASSWORD}
    uia = ok("register_uia_401", s.call("POST", f"{C}/register", first),
             exact=["flows", "params", "completed"])
    session = uia.get("session") if isinstance(uia, dict) else None
    s.remember(session, "<session>")
    done = dict(first, auth={"type": "m.login.dummy", "session": session})
    reg = ok("register_uia_complete", s.call("POST", f"{C}/register", done),
             exact=["user_id", "home_server"])
    if not isinstance(reg, dict) or "access_token" not in reg:
        raise Failure(f"{s.label}: registration of {alice_lp} did not complete: {reg}")
    alice, alice_tok = reg["user_id"], reg["access_token"]
    s.remember(alice_tok, "<alice token>")
    s.remember(reg.get("device_id"), "<alice device>")
    again = ok("register_uia_repeat", s.call("POST", f"{C}/register", done),
               exact=["user_id", "home_server"])
    if isinstance(again, dict):
        s.remember(again.get("access_token"), "<alice token 2>")
        s.remember(again.get("device_id"), "<alice device 2>")
        rec.fact("register_uia_repeat_same_device",
                 again.get("device_id") == reg.get("device_id"))
    ok("register_username_taken", s.call("POST", f"{C}/register",
                                         dict(first, auth={"type": "m.login.dummy"})))
    ok("register_invalid_username", s.call("POST", f"{C}/register", {
        "username": "Not Valid!", "password": PASSWORD, "auth": {"type": "m.login.dummy"}}))
    ok("register_available_taken", s.call("GET", f"{C}/register/available",
                                           query={"username": alice_lp}))
    ok("register_inhibit_login", s.call("POST", f"{C}/register", {
        "username": p + "carol", "password": PASSWORD, "inhibit_login": True,
        "auth": {"type": "m.login.dummy"}}), exact=["user_id"])
    bob_reg = register(s, p + "bob")
    bob, bob_tok = bob_reg["user_id"], bob_reg["access_token"]
    s.remember(bob_tok, "<bob token>")
    s.remember(bob_reg["device_id"], "<bob device>")
    dave_reg = register(s, p + "dave")
    dave, dave_tok = dave_reg["user_id"], dave_reg["access_token"]
    s.remember(dave_tok, "<dave token>")
    s.remember(dave_reg["device_id"], "<dave device>")

    ok("whoami", s.call("GET", f"{C}/account/whoami", token=alice_tok), exact=["user_id"])
    ok("missing_token", s.call("GET", f"{C}/account/whoami"))
    ok("unknown_token", s.call("GET", f"{C}/account/whoami", token="nonsense"))
    ok("capabilities", s.call("GET", f"{C}/capabilities", token=alice_tok),
       exact=["capabilities/*/enabled", "capabilities/m.room_versions/default"],
       opaque=["capabilities/m.room_versions/available"])

    # Push rules: the defaults, then a user's own rules, then every error case.
    pr = f"{C}/pushrules"
    ok("pushrules_all", s.call("GET", f"{pr}/", token=alice_tok), exact=["*"])
    ok("pushrules_global", s.call("GET", f"{pr}/global/", token=alice_tok), exact=["*"])
    ok("pushrules_no_trailing_slash", s.call("GET", pr, token=alice_tok))
    ok("pushrules_kind_list", s.call("GET", f"{pr}/global/override/", token=alice_tok),
       exact=["*"])
    ok("pushrules_get_default_rule",
       s.call("GET", f"{pr}/global/override/.m.rule.master", token=alice_tok), exact=["*"])
    ok("pushrules_get_default_content_rule",
       s.call("GET", f"{pr}/global/content/.m.rule.contains_user_name", token=alice_tok),
       exact=["*"])
    rule = {"actions": ["notify"],
            "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "one"}]}
    ok("pushrules_put", s.call("PUT", f"{pr}/global/override/cmp.one", rule, token=alice_tok))
    ok("pushrules_put_before", s.call("PUT", f"{pr}/global/override/cmp.two", rule,
                                      token=alice_tok, query={"before": "cmp.one"}))
    ok("pushrules_put_after", s.call("PUT", f"{pr}/global/override/cmp.three", rule,
                                     token=alice_tok, query={"after": "cmp.two"}))
    rec.fact("pushrules_order_before_after", override_ids(s.call("GET", f"{pr}/", token=alice_tok)))
    ok("pushrules_put_replace", s.call("PUT", f"{pr}/global/override/cmp.one",
                                       dict(rule, actions=["dont_notify"]), token=alice_tok))
    rec.fact("pushrules_order_after_replace", override_ids(s.call("GET", f"{pr}/", token=alice_tok)))
    ok("pushrules_put_before_unknown", s.call("PUT", f"{pr}/global/override/cmp.four", rule,
                                              token=alice_tok, query={"before": "cmp.nope"}))
    ok("pushrules_put_after_default", s.call(
        "PUT", f"{pr}/global/override/cmp.four", rule, token=alice_tok,
        query={"after": ".m.rule.master"}))
    ok("pushrules_order", s.call("GET", f"{pr}/global/override/", token=alice_tok),
       exact=["*"])
    ok("pushrules_get_user_rule", s.call("GET", f"{pr}/global/override/cmp.two",
                                         token=alice_tok), exact=["*"])
    ok("pushrules_put_content", s.call("PUT", f"{pr}/global/content/cmp.c",
                                       {"actions": ["notify"], "pattern": "cheese"},
                                       token=alice_tok))
    ok("pushrules_put_content_no_pattern", s.call(
        "PUT", f"{pr}/global/content/cmp.d", {"actions": ["notify"]}, token=alice_tok))
    ok("pushrules_put_sender", s.call("PUT", f"{pr}/global/sender/{q(bob)}",
                                      {"actions": ["dont_notify"]}, token=alice_tok))
    ok("pushrules_put_bad_action", s.call("PUT", f"{pr}/global/override/cmp.bad",
                                          {"actions": ["bogus"], "conditions": []},
                                          token=alice_tok))
    ok("pushrules_put_no_actions", s.call("PUT", f"{pr}/global/override/cmp.bad",
                                          {"conditions": []}, token=alice_tok))
    ok("pushrules_put_dot_rule_id", s.call("PUT", f"{pr}/global/override/.cmp.dot", rule,
                                           token=alice_tok))
    ok("pushrules_put_unknown_kind", s.call("PUT", f"{pr}/global/sideways/cmp.x", rule,
                                            token=alice_tok))
    ok("pushrules_put_unknown_scope", s.call("PUT", f"{pr}/device/override/cmp.x", rule,
                                             token=alice_tok))
    ok("pushrules_put_missing_rule_id", s.call("PUT", f"{pr}/global/override/", rule,
                                               token=alice_tok))
    ok("pushrules_get_unknown_kind", s.call("GET", f"{pr}/global/sideways/", token=alice_tok))
    ok("pushrules_get_unknown_scope", s.call("GET", f"{pr}/device/", token=alice_tok))
    ok("pushrules_get_unknown_rule", s.call("GET", f"{pr}/global/override/cmp.nope",
                                            token=alice_tok))
    ok("pushrules_delete_unknown_rule", s.call("DELETE", f"{pr}/global/override/cmp.nope",
                                               token=alice_tok))
    ok("pushrules_delete_default_rule", s.call(
        "DELETE", f"{pr}/global/override/.m.rule.master", token=alice_tok))
    ok("pushrules_put_default_rule", s.call("PUT", f"{pr}/global/override/.m.rule.master",
                                            rule, token=alice_tok))
    ok("pushrules_enabled_put", s.call("PUT", f"{pr}/global/override/cmp.one/enabled",
                                       {"enabled": False}, token=alice_tok))
    ok("pushrules_enabled_get", s.call("GET", f"{pr}/global/override/cmp.one/enabled",
                                       token=alice_tok), exact=["*"])
    ok("pushrules_enabled_bad", s.call("PUT", f"{pr}/global/override/cmp.one/enabled",
                                       {"enabled": "yes"}, token=alice_tok))
    ok("pushrules_actions_put", s.call("PUT", f"{pr}/global/override/cmp.one/actions",
                                       {"actions": ["notify", {"set_tweak": "highlight"}]},
                                       token=alice_tok))
    ok("pushrules_actions_get", s.call("GET", f"{pr}/global/override/cmp.one/actions",
                                       token=alice_tok), exact=["*"])
    ok("pushrules_default_enabled_put", s.call(
        "PUT", f"{pr}/global/override/.m.rule.master/enabled", {"enabled": True},
        token=alice_tok))
    ok("pushrules_default_actions_put", s.call(
        "PUT", f"{pr}/global/underride/.m.rule.message/actions", {"actions": []},
        token=alice_tok))
    ok("pushrules_unknown_attr", s.call("GET", f"{pr}/global/override/cmp.one/colour",
                                        token=alice_tok))
    ok("pushrules_attr_unknown_rule", s.call(
        "PUT", f"{pr}/global/override/cmp.nope/enabled", {"enabled": True}, token=alice_tok))
    ok("pushrules_delete", s.call("DELETE", f"{pr}/global/override/cmp.two", token=alice_tok))
    ok("pushrules_get_deleted", s.call("GET", f"{pr}/global/override/cmp.two",
                                       token=alice_tok))
    ok("pushrules_all_after", s.call("GET", f"{pr}/", token=alice_tok), exact=["*"])
    ok("account_data_push_rules", s.call("PUT", f"{C}/user/{q(alice)}/account_data/m.push_rules",
                                         {"global": {}}, token=alice_tok))

    # Start-up odds and ends.
    ok("voip_turn_server", s.call("GET", f"{C}/voip/turnServer", token=alice_tok), exact=["*"])
    ok("thirdparty_protocols", s.call("GET", f"{C}/thirdparty/protocols", token=alice_tok),
       exact=["*"])

    # OpenID.
    tok = ok("openid_request_token", s.call(
        "POST", f"{C}/user/{q(alice)}/openid/request_token", {}, token=alice_tok),
        exact=["token_type", "matrix_server_name"])
    oid = tok.get("access_token") if isinstance(tok, dict) else None
    s.remember(oid, "<openid token>")
    ok("openid_request_token_other_user", s.call(
        "POST", f"{C}/user/{q(bob)}/openid/request_token", {}, token=alice_tok))
    fed = "/_matrix/federation/v1/openid/userinfo"
    ok("openid_userinfo", s.call("GET", fed, query={"access_token": oid or "x"}), exact=["*"])
    ok("openid_userinfo_unknown_token", s.call("GET", fed, query={"access_token": "nope"}))
    ok("openid_userinfo_no_token", s.call("GET", fed))

    # Profiles and a room.
    ok("profile_set_displayname", s.call("PUT", f"{C}/profile/{q(alice)}/displayname",
                                         {"displayname": "Alice A"}, token=alice_tok))
    room_body = {"preset": "public_chat", "name": "Compare", "topic": "first",
                 "room_version": ROOM_VERSION}
    created = need(s, "createRoom", s.call("POST", f"{C}/createRoom", room_body,
                                            token=alice_tok))
    room = s.remember(created["room_id"], "!room")
    r = f"{C}/rooms/{q(room)}"
    ok("create_room_topic", s.call("GET", f"{r}/state/m.room.topic", token=alice_tok),
       exact=["*"])
    ok("create_room_state", by_type(s.call("GET", f"{r}/state", token=alice_tok)),
       exact=["*/type", "*/state_key", "*/content"])
    ok("profile_get", s.call("GET", f"{C}/profile/{q(alice)}"), exact=["*"])
    ok("profile_unknown_user", s.call("GET", f"{C}/profile/{q('@nobody-' + p + ':' + s.name)}"))
    ok("member_event_after_profile", s.call(
        "GET", f"{r}/state/m.room.member/{q(alice)}", token=alice_tok), exact=["*"])
    ok("join", s.call("POST", f"{C}/join/{q(room)}", {}, token=bob_tok), exact=["room_id"])
    ok("profile_set_displayname_in_room", s.call(
        "PUT", f"{C}/profile/{q(alice)}/displayname", {"displayname": "Alice B"},
        token=alice_tok))
    # Synapse rewrites the member events of a profile change in the background: wait
    # (bounded) until the new name shows, on both servers alike.
    until = time.monotonic() + 10
    while True:
        member = s.call("GET", f"{r}/state/m.room.member/{q(alice)}", token=bob_tok)
        updated = isinstance(member[1], dict) and member[1].get("displayname") == "Alice B"
        if updated or time.monotonic() > until:
            break
        time.sleep(0.1)
    rec.fact("member_event_follows_profile_within_10s", updated)
    ok("member_event_after_profile_change", member, exact=["*"])
    ok("joined_members", s.call("GET", f"{r}/joined_members", token=alice_tok), exact=["*"])
    ok("joined_members_non_member", s.call("GET", f"{r}/joined_members", token=dave_tok))

    # Identical state twice: the same event ID.
    topic = {"topic": "same"}
    t1 = need(s, "topic", s.call("PUT", f"{r}/state/m.room.topic", topic, token=alice_tok))
    s.remember(t1.get("event_id"), "$topic")
    t2 = ok("state_identical_twice", s.call("PUT", f"{r}/state/m.room.topic", topic,
                                            token=alice_tok))
    rec.fact("state_identical_twice_same_event_id",
             isinstance(t2, dict) and t2.get("event_id") == t1.get("event_id"))
    ok("state_get", s.call("GET", f"{r}/state/m.room.topic", token=alice_tok), exact=["*"])
    ok("state_get_unknown", s.call("GET", f"{r}/state/m.room.nothing", token=alice_tok))
    ok("state_get_format_event", s.call("GET", f"{r}/state/m.room.topic",
                                        token=alice_tok, query={"format": "event"}),
       exact=["content", "type", "state_key", "sender", "event_id"])

    # Messages and /messages paging on a small room.
    sent = []
    for i in range(3):
        ans = need(s, f"send {i}", s.call("PUT", f"{r}/send/m.room.message/cmp-txn-{i}",
                                          {"msgtype": "m.text", "body": f"message {i}"},
                                          token=alice_tok))
        sent.append(s.remember(ans["event_id"], f"$message{i}"))
    again = ok("send_same_txn", s.call("PUT", f"{r}/send/m.room.message/cmp-txn-2",
                                       {"msgtype": "m.text", "body": "message 2"},
                                       token=alice_tok), exact=["event_id"])
    no_txn = ok("send_post_without_txn", s.call("POST", f"{r}/send/m.room.message",
                                                {"msgtype": "m.text", "body": "no txn"},
                                                token=alice_tok))
    if isinstance(no_txn, dict):
        s.remember(no_txn.get("event_id"), "$no-txn")
    back = ok("messages_backward_all", s.call("GET", f"{r}/messages", token=alice_tok,
                                              query={"dir": "b", "limit": "100"}),
              ignore=["chunk"])
    if isinstance(back, dict):
        rec.fact("messages_backward_all_types",
                 [e.get("type") for e in back.get("chunk", [])])
    page = ok("messages_backward_page", s.call("GET", f"{r}/messages", token=alice_tok,
                                               query={"dir": "b", "limit": "2"}),
              exact=["chunk/*/content", "chunk/*/event_id"])
    if isinstance(page, dict) and "end" in page:
        nxt = ok("messages_backward_next_page", s.call(
            "GET", f"{r}/messages", token=alice_tok,
            query={"dir": "b", "limit": "2", "from": page["end"]}),
            exact=["chunk/*/content", "chunk/*/event_id"])
        del nxt
    ok("messages_forward_all", s.call("GET", f"{r}/messages", token=alice_tok,
                                      query={"dir": "f", "limit": "100"}), ignore=["chunk"])
    ok("messages_bad_dir", s.call("GET", f"{r}/messages", token=alice_tok,
                                  query={"dir": "sideways"}))

    # /event for a member and a non-member.
    ok("event_member", s.call("GET", f"{r}/event/{q(sent[0])}", token=bob_tok),
       exact=["content", "event_id", "type", "sender"])
    ok("event_non_member", s.call("GET", f"{r}/event/{q(sent[0])}", token=dave_tok))
    ok("event_unknown", s.call("GET", f"{r}/event/{q('$nothing')}", token=alice_tok))

    # Typing.
    ok("typing_false", s.call("PUT", f"{r}/typing/{q(alice)}", {"typing": False},
                              token=alice_tok), exact=["*"])
    ok("typing_true", s.call("PUT", f"{r}/typing/{q(alice)}", {"typing": True,
                                                                "timeout": 5000},
                             token=alice_tok), exact=["*"])
    ok("typing_other_user", s.call("PUT", f"{r}/typing/{q(bob)}", {"typing": False},
                                   token=alice_tok))
    ok("typing_non_member", s.call("PUT", f"{r}/typing/{q(dave)}",
                                   {"typing": False}, token=dave_tok))

    # Canonical alias validation.
    alias = f"#{p}hall:{s.name}"
    need(s, "create alias", s.call("PUT", f"{C}/directory/room/{q(alias)}", {"room_id": room},
                                   token=alice_tok))
    ca = f"{r}/state/m.room.canonical_alias"
    ok("canonical_alias_unknown", s.call("PUT", ca, {"alias": f"#{p}none:{s.name}"},
                                         token=alice_tok))
    ok("canonical_alias_invalid", s.call("PUT", ca, {"alias": "not-an-alias"},
                                         token=alice_tok))
    ok("canonical_alias_alt_unknown", s.call("PUT", ca, {"alias": alias,
                                                         "alt_aliases": [f"#{p}none:{s.name}"]},
                                             token=alice_tok))
    ok("canonical_alias_alt_invalid", s.call("PUT", ca, {"alt_aliases": ["nope"]},
                                             token=alice_tok))
    ok("canonical_alias_alt_not_list", s.call("PUT", ca, {"alt_aliases": "nope"},
                                              token=alice_tok))
    ok("canonical_alias_ok", s.call("PUT", ca, {"alias": alias}, token=alice_tok))
    ok("canonical_alias_get", s.call("GET", ca, token=alice_tok), exact=["*"])
    other = need(s, "second room", s.call("POST", f"{C}/createRoom",
                                          {"room_version": ROOM_VERSION}, token=alice_tok))
    s.remember(other["room_id"], "!other")
    ok("canonical_alias_other_room", s.call(
        "PUT", f"{C}/rooms/{q(other['room_id'])}/state/m.room.canonical_alias", {"alias": alias},
        token=alice_tok))

    # A user who left reads state as of their leave.
    ok("leave", s.call("POST", f"{r}/leave", {}, token=bob_tok), exact=["*"])
    need(s, "topic after leave", s.call("PUT", f"{r}/state/m.room.topic", {"topic": "later"},
                                        token=alice_tok))
    ok("left_state_event", s.call("GET", f"{r}/state/m.room.topic", token=bob_tok),
       exact=["*"])
    left = ok("left_state_all", s.call("GET", f"{r}/state", token=bob_tok), ignore=["*"])
    if isinstance(left, list):
        rec.fact("left_state_all_types", sorted((e.get("type"), s.normalize(e.get("state_key")))
                                                for e in left))
    ok("left_members", s.call("GET", f"{r}/members", token=bob_tok), ignore=["chunk"])
    ok("left_joined_members", s.call("GET", f"{r}/joined_members", token=bob_tok))
    ok("left_messages", s.call("GET", f"{r}/messages", token=bob_tok,
                               query={"dir": "b", "limit": "100"}), ignore=["chunk"])
    ok("left_send", s.call("PUT", f"{r}/send/m.room.message/cmp-left",
                           {"msgtype": "m.text", "body": "gone"}, token=bob_tok))

    # Room account data of m.push_rules, and a non-member's state read.
    ok("room_account_data_push_rules", s.call(
        "PUT", f"{C}/user/{q(alice)}/rooms/{q(room)}/account_data/m.push_rules", {},
        token=alice_tok))
    ok("state_non_member", s.call("GET", f"{r}/state", token=dave_tok))
    ok("unknown_room_state", s.call("GET", f"{C}/rooms/{q('!nothing:' + s.name)}/state",
                                    token=alice_tok))


# --- main --------------------------------------------------------------------------------


def short(v, limit=400):
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--myelin", nargs=2, metavar=("URL", "SERVER_NAME"), required=True)
    ap.add_argument("--synapse", nargs=2, metavar=("URL", "SERVER_NAME"), required=True)
    ap.add_argument("--dump", action="store_true", help="print every normalized answer")
    args = ap.parse_args()

    prefix = "cmp" + secrets.token_hex(4) + "-"
    recs = {}
    for label, (url, name) in (("myelin", args.myelin), ("synapse", args.synapse)):
        server = Server(label, url, name, prefix)
        rec = Recorder(server)
        try:
            scenario(server, rec)
        except Failure as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        recs[label] = rec
    mine, theirs = recs["myelin"], recs["synapse"]

    diffs = list(compare(mine, theirs))
    by_check = {}
    for d in diffs:
        by_check.setdefault(d[0], []).append(d)

    failing, known, allowed = [], [], []
    for d in diffs:
        if any(entry_matches(e, d) for e in ALLOWED):
            allowed.append(d)
        elif any(entry_matches(e, d) for e in KNOWN_DIFFERENCES):
            known.append(d)
        else:
            failing.append(d)
    stale = [e for e in KNOWN_DIFFERENCES if not any(entry_matches(e, d) for d in diffs)]

    names = list(theirs.checks) + [n for n in mine.checks if n not in theirs.checks]
    for name in names:
        ds = by_check.get(name, [])
        if not ds:
            verdict = "same"
        elif any(d in failing for d in ds):
            verdict = "DIFFERENT"
        elif any(d in known for d in ds):
            verdict = "known difference"
        else:
            verdict = "allowed difference"
        m, s = mine.checks.get(name), theirs.checks.get(name)
        status = "" if m is None or m.derived else f" [{m.status} / {s.status if s else '-'}]"
        print(f"{verdict:>18}  {name}{status}")
        if args.dump:
            for who, c in (("myelin", m), ("synapse", s)):
                if c is not None:
                    print(f"{'':>20}{who}: {short(c.body, 4000)}")

    print(f"\n{len(names)} checks: {len(failing)} differences, {len(known)} known, "
          f"{len(allowed)} allowed, {len(stale)} stale known differences")
    for title, group in (("DIFFERENCES", failing), ("known differences", known)):
        if group:
            print(f"\n{title} (check, path, what: myelin | synapse):")
            for check, path, what, m, s in group:
                print(f"  {check} {path or '.'} {what}: {short(m)} | {short(s)}")
    if failing:
        print("\nanswers of the checks that differ (normalized; myelin, then synapse):")
        for name in dict.fromkeys(d[0] for d in failing):
            for who, c in (("myelin", mine.checks.get(name)), ("synapse", theirs.checks.get(name))):
                if c is not None:
                    print(f"  {name} {who}: {c.status} {short(c.body, 3000)}")
        print("\nas KNOWN_DIFFERENCES entries:")
        for check, path, what, m, s in failing:
            print("    " + json.dumps({"check": check, "path": path, "what": what,
                                        "myelin": m, "synapse": s}) + ",")
    if stale:
        print("\nKNOWN_DIFFERENCES entries that no longer occur (myelin was fixed: delete them):")
        for e in stale:
            print("  " + json.dumps(e))
    return 1 if failing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
