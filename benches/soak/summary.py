"""Summarises a soak run (benches/soak/soak.sh) by window.

    python3 benches/soak/summary.py WORK MAX_RATE SOAK_RATE

Reads WORK/soak.progress (the load generator's per-second progress lines: cumulative
items and errors per operation), WORK/memory.csv (server RSS, anonymous RSS, data
size, events in memory parts and the last maintenance pass's duration every 10 s,
from the server's start), WORK/soak.start (when the soak's load began, epoch seconds)
and WORK/soak.json (the final report).
Prints a Markdown table per window of the run: ingest and query rates, new errors,
server memory (min–max of all resident memory, and of anonymous memory: the heap,
without the mapped segment files the kernel can drop) and data size, then whether
errors grew, whether the heap's peak stayed flat (the last window's peak anonymous
memory within 25% of the second window's), and the heap after the cool-down with no
load against the heap at the end of the first minute.
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

def num(v):
    return float(v) if v not in (None, "") else None


memory = [
    (
        int(r["seconds"]),
        int(r["rss_kib"]),
        int(r.get("rss_anon_kib") or 0),
        int(r["data_kib"]),
        int(r.get("epoch") or 0),
        num(r.get("memory_events")),
        num(r.get("maintenance_s")),
    )
    for r in csv.DictReader(open(f"{work}/memory.csv"))
]
report = json.load(open(f"{work}/soak.json"))
soak_seconds = report["seconds"]
# Align memory.csv's clock (from the server's start) to the soak's: by the recorded
# start of the load when there is one, else by the end of the run.
try:
    start_epoch = int(open(f"{work}/soak.start").read())
    t0_epoch = memory[0][4] - memory[0][0]
    offset = start_epoch - t0_epoch
except (OSError, ValueError, IndexError):
    offset = memory[-1][0] - soak_seconds if memory else 0

def beside(mem):
    """The heap not taken by memory parts: the intercept of a least-squares line of
    anonymous memory (MiB) against events in memory parts, over a window's samples.
    The heap follows the memory parts, which fill between maintenance passes; what
    is left over must stay flat."""
    pts = [(m[5], m[2] / 1024) for m in mem if m[5] is not None]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - slope * mx


if max_rate:
    print(f"flat out under query load: {max_rate} events/s; soak target {rate} events/s\n")
else:
    print(f"soak target {rate} events/s\n")
print(
    "| window | ingest events/s | queries/s | new errors "
    "| server RSS MiB (min–max) | of it anonymous MiB (min–max) | data GiB "
    "| events in memory (max) | maintenance pass s (max) | heap beside memory parts MiB |"
)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
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
    mem_events = max((m[5] for m in mem if m[5] is not None), default=0)
    maint = max((m[6] for m in mem if m[6] is not None), default=0)
    base = beside(mem)
    windows.append((ingest, queries, errors, min(anon), max(anon), base))
    print(
        f"| {start // 60}–{stop // 60} min | {ingest:,.0f} | {queries:,.0f} | {errors} "
        f"| {min(rss):,.0f}–{max(rss):,.0f} | {min(anon):,.0f}–{max(anon):,.0f} | {data:.1f} "
        f"| {mem_events:,.0f} | {maint:.1f} | {'' if base is None else f'{base:,.0f}'} |"
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
    if windows[1][5] is not None and windows[-1][5] is not None:
        print(
            f"heap beside memory parts: {windows[1][5]:,.0f} MiB in the second window, "
            f"{windows[-1][5]:,.0f} MiB in the last"
        )

cool = [m for m in memory if m[0] - offset > soak_seconds]
early = [m for m in memory if 0 < m[0] - offset <= 60]
if cool and early:
    last = cool[-1]
    print(
        f"after {(last[0] - offset - soak_seconds) // 60} min with no load: anonymous "
        f"{last[2] / 1024:,.0f} MiB with {last[5] or 0:,.0f} events in memory "
        f"(lowest of the cool-down {min(m[2] for m in cool) / 1024:,.0f} MiB); "
        f"in the first minute of load, lowest {min(m[2] for m in early) / 1024:,.0f} MiB"
    )
