#!/usr/bin/env python3
"""The heavy trajectories side by side, request by request: Sightline over HTTP (whole
events, and `fields=ts,device`) and DuckDB in process (`ts, device`, and whole rows:
every column its table holds), interleaved in one loop so all see the same moment of a
shared machine. Runs on what `compare.py` left in WORK (its
Sightline store and duck.db; the data directory is not needed).

    benches/compare/heavy.py --work WORK --bin target/release/sightline [--rounds 40]

Prints the medians (ms) and DuckDB's ratio to each. The heavy vehicles are those
`compare.py` picked (results.json does not keep them, so they are found again: the
vehicles with sightings nearest `--heavy-sightings`, from DuckDB's table).
"""

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

TRAJECTORY = """SELECT ts, device FROM events
WHERE kind = '{kind}' AND subject = '{subject}' AND ts >= {frm} AND ts < {to}
ORDER BY ts, device"""

# The same sightings, whole: every column the table holds (Sightline's whole events carry
# these and the event id; the stays are Sightline's alone).
TRAJECTORY_WHOLE = """SELECT ts, community, device, kind, subject, direction, attrs FROM events
WHERE kind = '{kind}' AND subject = '{subject}' AND ts >= {frm} AND ts < {to}
ORDER BY ts, device"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--bin", required=True, help="the sightline binary to serve the store")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--heavy", type=int, default=5)
    ap.add_argument("--heavy-sightings", type=int, default=626)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--whole-only", action="store_true",
                    help="no fields=ts,device series (a binary before `fields`)")
    args = ap.parse_args()
    import duckdb
    # Copies, so the run changes neither store.
    tmp = tempfile.mkdtemp(prefix="heavy-")
    store = os.path.join(tmp, "store")
    shutil.copytree(os.path.join(args.work, "sightline-store"), store)
    duck = os.path.join(tmp, "duck.db")
    shutil.copy(os.path.join(args.work, "duck.db"), duck)
    db = duckdb.connect(duck, read_only=True)
    plates = [p for p, n in db.execute(
        "SELECT subject, count(*) AS n FROM events WHERE kind = 'vehicle' GROUP BY subject "
        f"ORDER BY abs(n - {args.heavy_sightings}), subject LIMIT {args.heavy}").fetchall()]
    seen = dict(db.execute("SELECT subject, count(*) FROM events WHERE kind = 'vehicle' "
                           f"AND subject IN ({','.join(repr(p) for p in plates)}) GROUP BY subject").fetchall())
    print("heavy vehicles: " + ", ".join(f"{p} ({seen[p]})" for p in plates), file=sys.stderr)
    proc = subprocess.Popen([args.bin, "serve", "--no-auth", "--data", store,
                             "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        m = re.match(r"listening on http://([\d.]+):(\d+)", proc.stdout.readline())
        conn = http.client.HTTPConnection(m.group(1), int(m.group(2)))
        frm = 1630425600000  # 2021-09-01T00:00:00+08:00, the generator's first day
        to = frm + args.days * 86400000

        def sightline(p, fields):
            q = {"kind": "vehicle", "subject": p, "from": frm, "to": to, "limit": 10000}
            if fields:
                q["fields"] = fields
            t0 = time.perf_counter()
            conn.request("GET", "/v1/trajectory?" + urllib.parse.urlencode(q))
            r = conn.getresponse()
            body = r.read()
            dt = time.perf_counter() - t0
            assert r.status == 200, body[:200]
            return dt

        got = {}

        def duck_q(p, query=TRAJECTORY):
            t0 = time.perf_counter()
            rows = db.execute(query.format(kind="vehicle", subject=p, frm=frm, to=to)).fetchall()
            dt = time.perf_counter() - t0
            got.setdefault(p, len(rows))
            assert len(rows) == got[p]
            return dt

        runs = {"whole": lambda p: sightline(p, None), "pairs": lambda p: sightline(p, "ts,device"),
                "duckdb": duck_q, "duckdb_whole": lambda p: duck_q(p, TRAJECTORY_WHOLE)}
        if args.whole_only:
            del runs["pairs"]
        for p in plates:  # warm both
            for f in runs.values():
                f(p)
        times = {k: [] for k in runs}
        order = list(runs)
        for rnd in range(args.rounds):
            for p in plates:
                for k in order[rnd % len(order):] + order[: rnd % len(order)]:  # rotate who goes first
                    times[k].append(runs[k](p))
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        line = (f"Sightline whole events {med['whole']:.3f} ms; DuckDB {med['duckdb']:.3f} ms: "
                f"DuckDB / whole {med['duckdb'] / med['whole']:.2f}×; DuckDB whole rows "
                f"{med['duckdb_whole']:.3f} ms: DuckDB whole / whole "
                f"{med['duckdb_whole'] / med['whole']:.2f}×")
        if "pairs" in med:
            line += (f"; fields=ts,device {med['pairs']:.3f} ms: "
                     f"DuckDB / fields=ts,device {med['duckdb'] / med['pairs']:.2f}×")
        print(line)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
