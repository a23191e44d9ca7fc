"""Runs the Swift engine's and PyTorch/diffusers' SD 1.5 benchmarks on this machine, one after the
other, and prints both with the ratios (PyTorch time / Swift time: > 1 means Swift is faster).

    python3 Scripts/bench/compare.py [--runs 3] [--python ~/.sd-ref-venv/bin/python] [--only unet_512 ...]

Needs the release build (`swift build -c release`) and the reference environment of
Scripts/reference/requirements.txt. Both sides use random weights with the real SD 1.5 configs from
../shared/reference-configs, fp32, on all cores (PyTorch with torch.set_num_threads(os.cpu_count())).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default=os.path.expanduser("~/.sd-ref-venv/bin/python"))
    ap.add_argument("--only", nargs="*", default=[])
    args = ap.parse_args()
    threads = os.cpu_count() or 2
    swift_cmd = [os.path.join(ROOT, ".build/release/sd"), "bench", "--suite", "sd15", "--runs", str(args.runs), "--json"]
    if args.only:
        swift_cmd += ["--only"] + args.only
    swift = run(swift_cmd)
    torch_cmd = [args.python, "Scripts/reference/bench_torch.py", "--runs", str(args.runs), "--threads", str(threads), "--json"]
    if args.only and "txt2img_20_512" not in args.only:
        torch_cmd.append("--skip-pipeline")
    torch = run(torch_cmd)
    print(f"{'case':18s} {'swift min':>10s} {'swift med':>10s} {'torch min':>10s} {'torch med':>10s} {'ratio min':>10s} {'GFLOP/s':>8s}")
    for name, s in swift["results"].items():
        t = torch["results"].get(name)
        if t is None:
            continue
        gflops = s.get("gflop", 0) / s["min"] if s.get("gflop") else float("nan")
        print(f"{name:18s} {s['min']:10.3f} {s['median']:10.3f} {t['min']:10.3f} {t['median']:10.3f} "
              f"{t['min'] / s['min']:9.2f}x {gflops:8.1f}")
    print(f"peak resident memory: swift {swift['peak_rss_bytes'] / 2**20:.0f} MiB, "
          f"torch {torch['peak_rss_bytes'] / 2**20:.0f} MiB (torch {torch.get('torch', '?')}, {threads} threads)")


if __name__ == "__main__":
    main()
