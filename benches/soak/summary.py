"""Summarises a soak run (benches/soak/soak.sh) by window.

    python3 benches/soak/summary.py WORK MAX_RATE SOAK_RATE

Reads WORK/soak.progress (the load generator's per-second progress lines: cumulative
items and errors per operation), WORK/memory.csv (server RSS, anonymous RSS and data
size every 10 s, from the server's start) and WORK/soak.json (the final report).
Prints a Markdown table per window of the run: ingest and query rates, new errors,
server memory (min–max of all resident memory, and of anonymous memory: the heap,
without the mapped segment files the kernel can drop) and data size, then whether
errors grew and whether the heap stayed flat (the last window's peak anonymous memory
within 25% of the second window's).
"""

import csv
import json
import re
import sys

work, max_rate, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
WINDOW = 300  # seconds

line_re = re.compile(r"^\s*(\d+) s((?: \| [^|]+)+)$")
op_re = re.compile(r"(\w+): (\d+) (events|queries) \(\d+/s\), (\d+) errors")
samples = []  # (second, {op: (items, errors)})
for line in open(f"{work}/soak.progress", encoding="utf-8"):
    m = line_re.match(line.strip("\n"))
    if not m:
        continue
    ops = {o: (int(n), int(e)) for o, n, _, e in op_re.findall(m.group(2))}
    samples.append((int(m.group(1)), ops))

memory = [
    (int(r["seconds"]), int(r["rss_kib"]), int(r.get("rss_anon_kib") or 0), int(r["data_kib"]))
    for r in csv.DictReader(open(f"{work}/memory.csv"))
]
report = json.load(open(f"{work}/soak.json"))
soak_seconds = report["seconds"]
# memory.csv started before the 20 s calibration (and its request preparation); align
# its clock to the soak's by the end of the run.
offset = memory[-1][0] - soak_seconds if memory else 0

if max_rate:
    print(f"flat out under query load: {max_rate} events/s; soak target {rate} events/s\n")
else:
    print(f"soak target {rate} events/s\n")
print(
    "| window | ingest events/s | queries/s | new errors "
    "| server RSS MiB (min–max) | of it anonymous MiB (min–max) | data GiB |"
)
print("|---|---:|---:|---:|---:|---:|---:|")
windows = []
start = 0
prev = (0, {})
end_s = samples[-1][0] if samples else 0
while start < end_s:
    stop = min(start + WINDOW, end_s)
    inside = [s for s in samples if start < s[0] <= stop]
    if not inside:
        break
    last = inside[-1]
    secs = last[0] - prev[0]
    def delta(op, i):
        return last[1].get(op, (0, 0))[i] - prev[1].get(op, (0, 0))[i]
    ingest = delta("ingest", 0) / secs
    queries = sum(delta(o, 0) for o in last[1] if o != "ingest") / secs
    errors = sum(delta(o, 1) for o in last[1])
    mem = [m for m in memory if start < m[0] - offset <= stop]
    rss = [m[1] / 1024 for m in mem] or [0]
    anon = [m[2] / 1024 for m in mem] or [0]
    data = max((m[3] for m in mem), default=0) / 2**20
    windows.append((ingest, queries, errors, min(anon), max(anon)))
    print(
        f"| {start // 60}–{stop // 60} min | {ingest:,.0f} | {queries:,.0f} | {errors} "
        f"| {min(rss):,.0f}–{max(rss):,.0f} | {min(anon):,.0f}–{max(anon):,.0f} | {data:.1f} |"
    )
    prev = last
    start = stop

total_errors = sum(e for _, e in samples[-1][1].values()) if samples else 0
print()
for op in report["operations"]:
    lat = op["latency_ms"]
    print(
        f"- {op['op']}: {op['items']:,} {op['unit']} ({op['items_per_second']:,.0f}/s), "
        f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, p99.9 {lat['p999']} ms, "
        f"errors {sum(op['errors'].values())}"
    )
if len(windows) >= 3:
    grew = windows[-1][4] > 1.25 * windows[1][4]
    print(
        f"\nerrors: {total_errors} in all; memory "
        + ("GREW" if grew else "flat")
        + f": peak anonymous {windows[1][4]:,.0f} MiB in the second window, "
        + f"{windows[-1][4]:,.0f} MiB in the last"
    )
