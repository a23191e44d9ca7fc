#!/usr/bin/env python3
"""A bounded load on `sd serve` fronts: N txt2img requests from C concurrent clients, spread over the fronts
given; every request must end in a picture (200), a 503 or a 422. Prints throughput and p50/p99 latency.
Standard library only."""
import argparse, http.client, json, statistics, sys, threading, time

p = argparse.ArgumentParser()
p.add_argument("--front", action="append", required=True, help="host:port of a front; repeatable")
p.add_argument("--requests", type=int, default=300)
p.add_argument("--concurrency", type=int, default=30)
p.add_argument("--steps", type=int, default=1)
p.add_argument("--side", type=int, default=32)
a = p.parse_args()

lock = threading.Lock()
next_index = 0
results = []  # (status, seconds)

def client():
    global next_index
    while True:
        with lock:
            if next_index >= a.requests:
                return
            i = next_index
            next_index += 1
        host, port = a.front[i % len(a.front)].split(":")
        body = json.dumps({"prompt": "a red cube", "seed": i, "steps": a.steps, "width": a.side, "height": a.side})
        start = time.monotonic()
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=600)
            c.request("POST", "/sdapi/v1/txt2img", body, {"Content-Type": "application/json"})
            status = c.getresponse().status
            c.close()
        except Exception as e:  # a failure is reported, never retried
            status = f"error: {e}"
        with lock:
            results.append((status, time.monotonic() - start))

t0 = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
for t in threads: t.start()
for t in threads: t.join()
wall = time.monotonic() - t0
counts = {}
for s, _ in results: counts[s] = counts.get(s, 0) + 1
ok = sorted(sec for s, sec in results if s == 200)
q = lambda f: ok[min(len(ok) - 1, int(f * len(ok)))] if ok else float("nan")
print(json.dumps({"requests": len(results), "statuses": {str(k): v for k, v in counts.items()}, "wall_s": round(wall, 2),
                  "pictures_per_s": round(len(ok) / wall, 2), "p50_s": round(q(0.5), 3), "p99_s": round(q(0.99), 3)}))
bad = [s for s in counts if s not in (200, 503, 422)]
sys.exit(1 if bad or len(results) != a.requests else 0)
