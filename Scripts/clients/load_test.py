"""Bounded load on a local `sd serve` (loopback only), standard library only.

Starts `sd serve` on the tiny model with a small queue (so it overflows), sends --requests requests from
--clients concurrent clients (mostly small txt2img, every 10th invalid; a client
that gets a 503 waits --backoff seconds before its next request), and checks that every request
ends in a picture (200 with one PNG), a 503 (queue full) or a 422 (the invalid ones), that none hangs,
and that the counts add up. Samples the server's resident memory (VmRSS) throughout and reports
throughput, p50/p99 latency and peak RSS after warm-up and at the end (it should stay flat).

    python3 Scripts/clients/load_test.py --sd .build/release/sd [--model Models/tiny-sd1] [--requests 200] [--clients 20]
"""
import argparse
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--sd", required=True, help="the sd executable")
parser.add_argument("--model", default="Models/tiny-sd1")
parser.add_argument("--requests", type=int, default=200)
parser.add_argument("--clients", type=int, default=20)
parser.add_argument("--queue-size", type=int, default=4)
parser.add_argument("--timeout", type=float, default=120, help="seconds one request may take")
parser.add_argument("--backoff", type=float, default=0.2, help="seconds a client waits after a 503 before its next request")
parser.add_argument("--side", type=int, default=64)
parser.add_argument("--steps", type=int, default=4)
args = parser.parse_args()

server = subprocess.Popen([args.sd, "serve", "--model", args.model, "--port", "0", "--queue-size", str(args.queue_size)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = None
deadline = time.time() + 60
while time.time() < deadline and port is None:
    line = server.stdout.readline()
    m = re.search(r"listening on http://[^:]+:(\d+)", line or "")
    if m:
        port = int(m.group(1))
    elif server.poll() is not None:
        sys.exit("sd serve exited early")
if port is None:
    server.kill()
    sys.exit("sd serve did not start")


def rss_kib():
    with open(f"/proc/{server.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


samples = []
stop_sampling = threading.Event()


def sampler():
    while not stop_sampling.is_set():
        samples.append((time.time(), rss_kib()))
        time.sleep(0.05)


GOOD = {"prompt": "load", "steps": args.steps, "width": args.side, "height": args.side, "sampler_name": "Euler a"}
BAD = {"prompt": "load", "steps": args.steps, "width": args.side + 1, "height": args.side}

lock = threading.Lock()
next_index = 0
results = []  # (index, kind, status, seconds, ok)


def worker():
    global next_index
    while True:
        with lock:
            i = next_index
            next_index += 1
        if i >= args.requests:
            return
        invalid = i % 10 == 9
        body = dict(BAD if invalid else GOOD, seed=i)
        start = time.time()
        status, ok = 0, False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=args.timeout)
            conn.request("POST", "/sdapi/v1/txt2img", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            if status == 200:
                images = json.loads(data)["images"]
                ok = not invalid and len(images) == 1 and base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
            elif status == 503:
                ok = not invalid and resp.getheader("Retry-After") is not None
            elif status == 422:
                ok = invalid and json.loads(data)["detail"][0]["loc"] == ["body", "width"]
            conn.close()
        except Exception as e:  # noqa: BLE001 - a hang or a reset is a failure, counted below
            status = f"error: {type(e).__name__}"
        with lock:
            results.append((i, "invalid" if invalid else "valid", status, time.time() - start, ok))
        if status == 503:
            time.sleep(args.backoff)


threading.Thread(target=sampler, daemon=True).start()
t0 = time.time()
threads = [threading.Thread(target=worker) for _ in range(args.clients)]
for t in threads:
    t.start()
for t in threads:
    t.join(args.timeout * args.requests)
elapsed = time.time() - t0
stop_sampling.set()

# The server's own view: mean seconds per generation job and its job counters.
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
conn.request("GET", "/metrics")
metrics = conn.getresponse().read().decode()
conn.close()
gen_sum = float(re.search(r"^sd_generation_seconds_sum (\S+)", metrics, re.M).group(1))
gen_count = int(float(re.search(r"^sd_generation_seconds_count (\S+)", metrics, re.M).group(1)))
jobs = dict(re.findall(r'^sd_jobs_total\{outcome="(\w+)"\} (\S+)', metrics, re.M))

server.terminate()
try:
    exit_code = server.wait(60)
except subprocess.TimeoutExpired:
    server.kill()
    exit_code = "killed"

counts = {}
for _, _, status, _, _ in results:
    counts[status] = counts.get(status, 0) + 1
latencies = sorted(r[3] for r in results)
pictures = counts.get(200, 0)
bad = [r for r in results if not r[4]]


def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] if latencies else float("nan")


warm = [kib for t, kib in samples if t - t0 < elapsed * 0.25]
late = [kib for t, kib in samples if t - t0 >= elapsed * 0.75]
print(f"requests {len(results)}/{args.requests} from {args.clients} clients in {elapsed:.1f} s "
      f"(queue size {args.queue_size}); statuses {counts}")
print(f"throughput {len(results) / elapsed:.1f} requests/s, {pictures / elapsed:.2f} pictures/s; "
      f"latency p50 {pct(50) * 1000:.0f} ms, p99 {pct(99) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
print(f"server: {gen_count} jobs, mean {gen_sum / max(1, gen_count) * 1000:.0f} ms each; sd_jobs_total {jobs}")
print(f"server RSS: peak in first quarter {max(warm, default=0) / 1024:.0f} MiB, peak in last quarter "
      f"{max(late, default=0) / 1024:.0f} MiB, overall peak {max((k for _, k in samples), default=0) / 1024:.0f} MiB; "
      f"exit after SIGTERM: {exit_code}")
flat = not warm or not late or max(late) <= max(warm) * 1.25 + 20 * 1024
agree = int(float(jobs.get("done", 0))) == counts.get(200, 0) and int(float(jobs.get("rejected", 0))) == counts.get(503, 0)
if not agree:
    print("the server's job counters disagree with what the clients saw")
ok = len(results) == args.requests and not bad and sum(counts.values()) == args.requests and flat and exit_code == 0 and agree
if bad:
    print("unexpected:", bad[:5])
if not flat:
    print("RSS grew during the run")
print(f"{args.requests - len(bad)} passed, {len(bad) + (args.requests - len(results))} failed")
sys.exit(0 if ok else 1)
