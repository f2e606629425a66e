#!/usr/bin/env python3
"""Heavy whole pages and `fields=ts,device` pages asked over one keep-alive connection,
alternating, with a gap before each request: what the server's own time
(`Server-Timing`: query + serialize) and the client's clock are when the server sits
idle between requests, against back to back (BENCHMARKS.md, "A whole page when the
server sits idle between requests").

    benches/pages/idle_gap.py PORT [GAP_MS]     # GAP_MS 0: back to back (default)

PORT serves a copy of the `compare.py` store (`sightline gen --communities 10 --days 30
--source-ids`); the plates are the 5 heavy vehicles `compare.py` picks there.
Prints the medians (ms) of 38 rounds (the first 2 dropped)."""

import http.client
import statistics
import sys
import time
import urllib.parse

PLATES = ["苏E1XFTU", "苏EVVMBY", "苏E7SWZK", "苏EFWJKD", "苏EF72863"]
FROM, TO = 1630425600000, 1633017600000  # the generator's 30 days


def main():
    port = int(sys.argv[1])
    gap = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def target(plate, fields):
        q = {"kind": "vehicle", "subject": plate, "from": FROM, "to": TO, "limit": 10000}
        if fields:
            q["fields"] = fields
        return "/v1/trajectory?" + urllib.parse.urlencode(q)

    kinds = (None, "ts,device")
    times = {k: ([], []) for k in kinds}
    for rnd in range(40):
        for plate in PLATES:
            for fields in (kinds if rnd % 2 == 0 else kinds[::-1]):
                if gap:
                    time.sleep(gap)
                t0 = time.perf_counter()
                conn.request("GET", target(plate, fields))
                r = conn.getresponse()
                r.read()
                dt = time.perf_counter() - t0
                assert r.status == 200, r.status
                server = sum(float(p.split("dur=")[1]) for p in r.getheader("server-timing").split(","))
                if rnd >= 2:
                    times[fields][0].append(dt * 1000)
                    times[fields][1].append(server)
    for fields, (client, server) in times.items():
        print(f"{fields or 'whole'}: client {statistics.median(client):.3f} ms, "
              f"server {statistics.median(server):.3f} ms")


if __name__ == "__main__":
    main()
