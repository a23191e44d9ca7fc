"""A hot `sd serve` request against the networks' own time, in one run: the SD-Turbo recipe (SD 2.1 base
architecture with random weights, 512x512, 1 step, guidance 0, TAESD decode) through AUTOMATIC1111's
/sdapi/v1/txt2img (prompt in, PNG bytes out), beside `sd bench --suite turbo` (one batch-1 UNet call + the text
encoder + the TAESD decode, the floor a request cannot go below).

    python3 Scripts/bench/serve_hot.py [--requests 6] [--precision bf16] [--model DIR] [--taesd DIR] [--port 7861]

The folders are Scripts/bench/make_sd15_folder.py's (`--arch sd-turbo --taesd`). The server listens on 127.0.0.1
only and is stopped by its pid at the end, whatever happens. Request times are client wall times (urllib, JSON
decode of the answer included); the first request is reported apart (it creates oneDNN primitives).
"""
import argparse
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.path.expanduser("~/.cache/sd-bench")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def post(url, body, timeout):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until_up(base, proc, limit_s):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"sd serve exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(base + "/sdapi/v1/sd-models", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    sys.exit(f"sd serve did not answer within {limit_s} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=6, help="requests after the first")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--model", default=os.path.join(CACHE, "sd-turbo-random"))
    ap.add_argument("--taesd", default=os.path.join(CACHE, "taesd-random"))
    ap.add_argument("--port", type=int, default=7861)
    ap.add_argument("--bench-runs", type=int, default=5)
    ap.add_argument("--sd", default=os.path.join(ROOT, ".build", "release", "sd"))
    args = ap.parse_args()
    for path in (args.model, args.taesd):
        if not os.path.isdir(path):
            sys.exit(f"no {path}: run Scripts/bench/make_sd15_folder.py --arch sd-turbo --taesd")

    bench = subprocess.run([args.sd, "bench", "--suite", "turbo", "--precision", args.precision, "--runs",
                            str(args.bench_runs), "--json"], capture_output=True, text=True, check=True)
    networks = json.loads(bench.stdout)["results"]

    base = f"http://127.0.0.1:{args.port}"
    started = time.perf_counter()
    proc = subprocess.Popen([args.sd, "serve", "--model", args.model, "--vae", args.taesd, "--precision",
                             args.precision, "--host", "127.0.0.1", "--port", str(args.port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(base, proc, 300)
        up_s = time.perf_counter() - started
        body = {"prompt": "a photograph of an astronaut riding a horse", "steps": 1, "cfg_scale": 0, "width": 512,
                "height": 512, "sampler_name": "Euler", "seed": 0}
        times = []
        for i in range(args.requests + 1):
            body["seed"] = i
            t0 = time.perf_counter()
            answer = post(base + "/sdapi/v1/txt2img", body, timeout=300)
            times.append(time.perf_counter() - t0)
            png = base64.b64decode(answer["images"][0])
            assert png.startswith(PNG_MAGIC), "the answer's image is not a PNG"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    hot = times[1:]
    floor = networks["networks"]
    print(f"sd serve --precision {args.precision}: up in {up_s:.2f} s; first request {times[0]:.3f} s; hot requests "
          f"min {min(hot):.3f} / median {statistics.median(hot):.3f} s ({len(hot)})")
    print("networks (sd bench --suite turbo, min / median s): " + ", ".join(
        f"{k} {v['min']:.3f} / {v['median']:.3f}" for k, v in networks.items()))
    print(f"hot request / networks: {min(hot) / floor['min']:.2f}x (min), "
          f"{statistics.median(hot) / floor['median']:.2f}x (median)")


if __name__ == "__main__":
    main()
