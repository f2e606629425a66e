#!/usr/bin/env python3
"""Medians (ms) of N rounds of whole trajectory pages asked over one keep-alive
connection (Python's http.client, each answer read whole): the total at the client,
and the server's query and serialize times from Server-Timing. The default subjects
are the heavy vehicles (545-636 sightings) of a `compare.py` run's store
(`sightline gen --communities 10 --days 30 --source-ids`).

    benches/pages/keepalive.py PORT N [SUBJECT...]
    FIELDS=ts,device benches/pages/keepalive.py PORT N     # pages of those fields only
    FLUSH_MB=64 benches/pages/keepalive.py PORT N          # caches cold: 64 MiB written
                                                           # between requests (off the clock)

With FLUSH_MB the client writes that much memory before each request, as a client that
does other work between requests does (compare.py parses each answer's JSON): the
server's next answer starts with cold caches, as it does there.
"""
import http.client, sys, time, statistics, urllib.parse, re, os
port=int(sys.argv[1]); n=int(sys.argv[2])
subs=sys.argv[3:] or ["苏E1XFTU","苏EVVMBY","苏E7SWZK","苏EFWJKD","苏EF72863"]
c=http.client.HTTPConnection("127.0.0.1",port)
flush_mb=int(os.environ.get("FLUSH_MB","0"))
flush=bytearray(flush_mb<<20); ones=b"\1"*(len(flush)//64)
ts=[];qs=[];ss=[]
for i in range(n):
    for s in subs:
        p={"kind":"vehicle","subject":s,"from":1630425600000,"to":1633017600000,"limit":10000}
        if os.environ.get("FIELDS"): p["fields"]=os.environ["FIELDS"]
        q=urllib.parse.urlencode(p)
        if flush_mb: flush[::64]=ones   # a byte in every cache line
        t0=time.perf_counter(); c.request("GET","/v1/trajectory?"+q); r=c.getresponse(); b=r.read(); ts.append(time.perf_counter()-t0)
        assert r.status==200
        st=r.getheader("server-timing"); m=re.search(r"query;dur=([\d.]+), serialize;dur=([\d.]+)",st)
        qs.append(float(m.group(1))); ss.append(float(m.group(2)))
print(f"total {statistics.median(ts)*1000:.3f} query {statistics.median(qs):.3f} serialize {statistics.median(ss):.3f}")
