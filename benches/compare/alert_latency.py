#!/usr/bin/env python3
"""Watchlist alert latency: a server with WATCHED exact plates on a watchlist and an
alert subscription to a receiver here; the load generator ingests the synthetic city at
RATE events/s; the receiver notes when each alert arrives. Latency = arrival − the
alert's `raised` time (taken before the ingest is acknowledged, so this is an upper
bound of acknowledgement → delivery). Standard library only.

    cargo build --release --bin sightline --bin http-load
    python3 benches/compare/alert_latency.py [--rate 50000] [--watched 10000] [--seconds 20]
"""

import argparse
import datetime
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RELEASE = os.path.join(ROOT, "target", "release")
latencies = []
lock = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.time() * 1000
        for a in json.loads(body).get("alerts", []):
            raised = datetime.datetime.fromisoformat(a["raised"]).timestamp() * 1000
            with lock:
                latencies.append(now - raised)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=50000)
    ap.add_argument("--watched", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--work", default="/tmp/sightline-alerts")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    # The plates of the city the load generator sends (its default: `gen --plain`).
    subprocess.run([os.path.join(RELEASE, "sightline"), "gen", "--plain", "--out",
                    os.path.join(args.work, "city"), "--format", "ndjson"], check=True,
                   capture_output=True)
    plates = []
    seen = set()
    events_dir = os.path.join(args.work, "city", "events")
    for name in sorted(os.listdir(events_dir)):
        with open(os.path.join(events_dir, name)) as f:
            for line in f:
                e = json.loads(line)
                if e["kind"] == "vehicle" and e["subject"] not in seen:
                    seen.add(e["subject"])
                    plates.append(e["subject"])
    watched = plates[: args.watched]

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    server = subprocess.Popen([os.path.join(RELEASE, "sightline"), "serve", "--no-auth", "--data",
                               os.path.join(args.work, "store"), "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.match(r"listening on http://([\d.]+):(\d+)", server.stdout.readline())
    host, port = m.group(1), int(m.group(2))
    conn = http.client.HTTPConnection(host, port)

    def post(path, body):
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status // 100 != 2:
            raise SystemExit(f"{path}: {r.status} {data[:200]!r}")

    post("/v1/watchlists", {"name": "load", "reason": "latency test",
                            "entries": [{"kind": "vehicle", "subject": p} for p in watched]})
    post("/v1/subscriptions", {"url": f"http://127.0.0.1:{receiver.server_address[1]}/alerts",
                               "alerts": True, "batch": 1000})
    out = subprocess.run([os.path.join(RELEASE, "http-load"), "--addr", f"{host}:{port}",
                          "--seconds", str(args.seconds), "--server-pid", str(server.pid),
                          "ingest", "--rate", str(args.rate), "--batch", "1000"],
                         check=True, capture_output=True, text=True).stdout
    time.sleep(2)
    server.terminate()
    server.wait(timeout=60)
    with lock:
        lat = sorted(latencies)
    if not lat:
        raise SystemExit("no alerts arrived")
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(out.strip())
    print(f"{len(watched)} watched plates; {len(lat)} alerts delivered; latency ms "
          f"p50 {q(0.5):.1f} p90 {q(0.9):.1f} p99 {q(0.99):.1f} max {lat[-1]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
