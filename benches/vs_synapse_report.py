#!/usr/bin/env python3
"""Turns the JSON lines of benches/vs-synapse.sh into benches/RESULTS.md.

    vs_synapse_report.py [--output benches/RESULTS.md] benches/results/vs-synapse-<db>.jsonl...

Each input file holds one database kind: a `meta` line, then for every run of each server
the `myelin-load` scenario lines and a `process` line (the server's startup, RSS and CPU),
each tagged with `server`, `db` and `run`. Every figure in the tables is the median over the
runs of that server; the ratio is myelin's median over Synapse's. Standard library only.
"""

import argparse
import os
import json
import statistics
import sys
from collections import defaultdict

SERVERS = ("myelin", "synapse")
DB_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def path(*keys):
    """A getter of a nested field, None when any part is missing."""

    def get(line):
        value = line
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return get


def kib_to_mib(get):
    return lambda line: None if get(line) is None else get(line) / 1024


# (row label, scenario, getter)
ROWS = [
    ("register: rate (users/s)", "register", path("rate")),
    ("send: rate (messages/s)", "send", path("rate")),
    ("send: p50 (ms)", "send", path("latency_ms", "p50")),
    ("send_to_sync: p50 (ms)", "send_to_sync", path("latency_ms", "p50")),
    ("send_to_sync: p95 (ms)", "send_to_sync", path("latency_ms", "p95")),
    ("send_to_sync: p99 (ms)", "send_to_sync", path("latency_ms", "p99")),
    ("initial_sync: p50 (ms)", "initial_sync", path("latency_ms", "p50")),
    ("initial_sync: max (ms)", "initial_sync", path("latency_ms", "max")),
    ("initial_sync: response (bytes)", "initial_sync", path("response_bytes")),
    ("idle_sync: polls held", "idle_sync", path("held")),
    ("idle_sync: per idle client (KiB)", "idle_sync", path("per_client_kib")),
    ("server: RSS when ready (MiB)", "process", kib_to_mib(path("rss_kib_ready"))),
    ("server: peak RSS (MiB)", "process", kib_to_mib(path("peak_rss_kib"))),
    ("server: RSS at the end (MiB)", "process", kib_to_mib(path("rss_kib_end"))),
    ("server: CPU time during the load (s)", "process", path("cpu_seconds_load")),
    ("server: startup (s)", "process", path("startup_seconds")),
    ("load run: wall time (s)", "process", path("load_seconds")),
]


def num(v):
    """Three significant digits, never in exponent notation."""
    if v is None:
        return "—"
    if v == 0:
        return "0"
    a = abs(v)
    if float(v).is_integer() and a >= 1:
        return f"{int(v):,}"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def numbers(values):
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def median(values):
    values = numbers(values)
    return statistics.median(values) if values else None


def cell(values):
    """The median, followed by the range over the runs when they differ by more than 20%."""
    values = numbers(values)
    if not values:
        return "—"
    m = statistics.median(values)
    lo, hi = min(values), max(values)
    if len(values) > 1 and hi - lo > 0.2 * abs(m):
        return f"{num(m)} ({num(lo)}–{num(hi)})"
    return num(m)


def ratio(m, s):
    if m is None or s is None or s == 0:
        return None
    return m / s


def errors_text(lines):
    """Failures of one server over all its runs: errors by scenario and kind, skipped
    scenarios, unfinished load runs."""
    counts = defaultdict(int)
    notes = []
    for line in lines:
        scenario = line.get("scenario")
        for field in ("errors", "setup_errors"):
            for kind, n in (line.get(field) or {}).items():
                where = scenario if field == "errors" else f"{scenario} setup"
                counts[(where, kind)] += n
        if line.get("skipped"):
            notes.append(f"run {line.get('run')}: {scenario} skipped ({line['skipped']})")
        if scenario == "process" and line.get("load_exit"):
            notes.append(f"run {line.get('run')}: myelin-load exit {line['load_exit']}")
    parts = [f"{where} {kind} ×{n}" for (where, kind), n in sorted(counts.items())]
    return "; ".join(parts + notes) or "none"


def table(lines):
    by = defaultdict(list)  # (server, scenario) -> lines
    for line in lines:
        if line.get("server") in SERVERS:
            by[(line["server"], line.get("scenario"))].append(line)
    out = ["| | myelin | Synapse | myelin/Synapse |", "|---|---:|---:|---:|"]
    medians = {}
    for label, scenario, get in ROWS:
        mv = [get(l) for l in by[("myelin", scenario)]]
        sv = [get(l) for l in by[("synapse", scenario)]]
        m, s = median(mv), median(sv)
        medians[label] = (m, s)
        out.append(f"| {label} | {cell(mv)} | {cell(sv)} | {num(ratio(m, s))} |")
    errs = {
        srv: errors_text([l for l in lines if l.get("server") == srv]) for srv in SERVERS
    }
    out.append(f"| errors (all runs) | {errs['myelin']} | {errs['synapse']} | |")
    return out, medians


def targets(medians):
    def verdict(ok):
        return "—" if ok is None else ("met" if ok else "**not met**")

    send = ratio(*medians["send: rate (messages/s)"])
    s2s = medians["send_to_sync: p50 (ms)"][0]
    peak = ratio(*medians["server: peak RSS (MiB)"])
    end = ratio(*medians["server: RSS at the end (MiB)"])
    return [
        f"- send throughput ≥ 20× Synapse's: {num(send)}× — "
        f"{verdict(None if send is None else send >= 20)}",
        f"- send-to-sync p50 ≤ 2 ms: {'—' if s2s is None else f'{s2s:.3f}'} ms — "
        f"{verdict(None if s2s is None else s2s <= 2)}",
        f"- resident memory ≤ 1/5 of Synapse's: peak {num(peak)}, at the end {num(end)} — "
        f"{verdict(None if peak is None or end is None else max(peak, end) <= 0.2)}",
    ]


def report(files):
    sections = []
    metas = []
    for name in files:
        with open(name) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        meta = next((l for l in lines if l.get("scenario") == "meta"), {})
        metas.append(meta)
        db = meta.get("db") or lines[-1].get("db", "?")
        runs = {(l["server"], l["run"]) for l in lines if l.get("scenario") == "process"}
        n = {srv: sum(1 for s, _ in runs if s == srv) for srv in SERVERS}
        rows, medians = table(lines)
        title = DB_TITLES.get(db, db)
        version = f" {meta['postgres_version']}" if meta.get("postgres_version") else ""
        sections += [
            f"## {title}{version}",
            "",
            f"{n['myelin']} run(s) of myelin and {n['synapse']} of Synapse, alternating, each "
            f"on a fresh database. Each cell is the median over the runs, with their range in "
            f"parentheses when they differ by more than 20%. Raw lines: `benches/{name.split('benches/', 1)[-1]}`.",
            "",
            *rows,
            "",
            "Targets (issue 5):",
            "",
            *targets(medians),
            "",
        ]
    m = metas[0] if metas else {}
    head = [
        "# myelin vs Synapse",
        "",
        "Written by `benches/vs-synapse.sh` (the tables by `benches/vs_synapse_report.py`); "
        "rerun it rather than editing this file.",
        "",
        f"- date: {m.get('date', '?')}",
        f"- machine: {m.get('nproc', '?')} CPUs ({m.get('cpu') or 'unknown model'}), "
        f"{m.get('mem_gib', '?')} GiB RAM, Linux {m.get('kernel', '?')}",
        f"- myelin {m.get('myelin_rev', '?')} (release build); Synapse "
        f"{m.get('synapse_version', '?')} from PyPI on Python {m.get('python', '?')}",
        f"- 1-minute load average when the script started: {m.get('loadavg_at_start', '?')}",
        f"- load: `myelin-load {m.get('load_args', '')}` with `--server-pid`, the same "
        "arguments against both servers, on the same machine as the server",
        "",
        "Both servers listen on loopback over plain HTTP, one at a time, with rate limiting "
        "off (myelin `rate_limit.enabled=false`; every Synapse `rc_*` limit raised to "
        "10⁶/s), registration open without verification, presence on, logging at WARNING. "
        "Password hashing keeps each server's default (Synapse: bcrypt, 12 rounds; myelin: "
        "argon2id, 19 MiB, 2 iterations): it dominates `register` and the logins of "
        "`idle_sync` on both. Synapse is one process (no workers) with its default caches, "
        "except that `caches.sync_response_cache_duration` is 0: `initial_sync` repeats "
        "the same `/sync`, which Synapse would otherwise replay from its response cache for "
        "2 minutes while myelin computes every one; "
        "myelin uses `config.toml` with its listen address, data directory and database "
        "changed.",
        "",
        "Ratios are myelin/Synapse: above 1 is better for rates, below 1 for latencies, "
        "memory and CPU time. RSS is the server process's resident memory (`VmRSS`; peak: "
        "`VmHWM`, startup included); CPU time is user+system of the server process from "
        "the moment it answered to the end of the load. The load tool shares the machine's "
        "CPUs with the server. Scenario definitions: README.md, \"Load tool\".",
        "",
        "Targets from issue 5: send throughput ≥ 20× Synapse's, send-to-sync p50 ≤ 2 ms, "
        "resident memory ≤ 1/5 of Synapse's.",
        "",
    ]
    return "\n".join(head + sections).rstrip() + "\n"


# Hand-written notes appended to the generated tables (the profile, before and after).
APPENDIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "PROFILE.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--output", default="-")
    args = parser.parse_args()
    text = report(args.files)
    if os.path.exists(APPENDIX):
        with open(APPENDIX) as f:
            text += "\n" + f.read()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
