"""Runs the Swift engine's and PyTorch/diffusers' SD 1.5 benchmarks on this machine, one after the
other, and prints both with the ratios (PyTorch time / Swift time: > 1 means Swift is faster).

    python3 Scripts/bench/compare.py [--suite sd15|sdxl] [--runs 3] [--python ~/.sd-ref-venv/bin/python]
        [--only unet_512 ...] [--openvino [--ov-python ~/.sd-ov-venv/bin/python] [--ov-model DIR]] [--bf16]

--suite sdxl: the SDXL base architecture (UNet 1024 batch 2, both text encoders, VAE decode 1024); its OpenVINO
models come from Scripts/bench/make_sdxl_ov.py (default ~/.cache/sd-bench/sdxl-random-ov).

Needs the release build (`swift build -c release`) and the reference environment of
Scripts/reference/requirements.txt. Both sides use random weights with the real SD 1.5 configs from
../shared/reference-configs, fp32, on all cores (PyTorch with torch.set_num_threads(os.cpu_count())).

--openvino adds OpenVINO columns (Scripts/bench/bench_openvino.py in the venv of
Scripts/bench/requirements-openvino.txt, on the export made by Scripts/bench/make_sd15_folder.py --openvino:
the same architecture and configs): f32, and with --bf16 also bf16; the ov/swift column divides OpenVINO's
time of the row's precision by Swift's (> 1: Swift faster).
--bf16 adds bf16 rows: `sd bench --precision bf16` where this sd has the flag (else a note says it was
skipped) beside OpenVINO bf16.
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


def sd_bench_has_precision(sd):
    try:
        return "--precision" in subprocess.run([sd, "bench", "--help"], capture_output=True, text=True).stdout
    except OSError:
        return False


def cell(v, width=10):
    return f"{v:{width}.3f}" if v is not None else f"{'-':>{width}s}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default=os.path.expanduser("~/.sd-ref-venv/bin/python"))
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--openvino", action="store_true", help="add OpenVINO columns (bench_openvino.py)")
    ap.add_argument("--ov-python", default=os.path.expanduser("~/.sd-ov-venv/bin/python"))
    ap.add_argument("--ov-model", default=None, help="default: the suite's (bench_openvino.py)")
    ap.add_argument("--suite", choices=["sd15", "sdxl"], default="sd15")
    ap.add_argument("--bf16", action="store_true", help="add bf16 rows (sd --precision bf16, OpenVINO bf16)")
    args = ap.parse_args()
    threads = os.cpu_count() or 2
    sd = os.path.join(ROOT, ".build/release/sd")
    swift_cmd = [sd, "bench", "--suite", args.suite, "--runs", str(args.runs), "--json"]
    if args.only:
        swift_cmd += ["--only"] + args.only
    swift = run(swift_cmd)
    swift_bf16, notes = None, []
    if args.bf16:
        if sd_bench_has_precision(sd):
            swift_bf16 = run(swift_cmd + ["--precision", "bf16"])
        else:
            notes.append("sd bf16 skipped: this sd has no --precision")
    torch_cmd = [args.python, "Scripts/reference/bench_torch.py", "--suite", args.suite, "--runs", str(args.runs), "--threads", str(threads), "--json"]
    if args.only:
        torch_cmd += ["--only"] + args.only
    torch = run(torch_cmd)
    ov = None
    if args.openvino:
        ov_cmd = [args.ov_python, "Scripts/bench/bench_openvino.py", "--suite", args.suite, "--runs", str(args.runs),
                  "--threads", str(threads), "--json", "--precisions", "f32"] + (["bf16"] if args.bf16 else [])
        if args.ov_model:
            ov_cmd += ["--ov-model", args.ov_model]
        if args.only:
            ov_cmd += ["--only"] + args.only
        try:
            ov = run(ov_cmd)
        except (OSError, subprocess.CalledProcessError) as e:
            notes.append(f"OpenVINO skipped: {e}")

    ov_cols = ["f32"] + (["bf16"] if args.bf16 else []) if ov else []
    header = (f"{'case':22s} {'swift min':>10s} {'swift med':>10s} {'torch min':>10s} {'torch med':>10s} "
              f"{'ratio min':>10s} {'GFLOP/s':>8s}")
    for p in ov_cols:
        header += f" {'ov ' + p + ' min':>12s}"
    if ov:
        header += f" {'ov/swift':>9s}"
    print(header)

    def row(name, case, s, t, precision):
        gflops = s.get("gflop", 0) / s["min"] if s.get("gflop") else float("nan")
        ratio = f"{t['min'] / s['min']:9.2f}x" if t else f"{'-':>10s}"
        line = (f"{name:22s} {s['min']:10.3f} {s['median']:10.3f} {cell(t and t['min'])} {cell(t and t['median'])} "
                f"{ratio} {gflops:8.1f}")
        for p in ov_cols:
            o = ov["results"].get(p, {}).get(case)
            line += f" {cell(o and o['min'], 12)}"
        if ov:  # OpenVINO of the row's precision over Swift (> 1: Swift faster)
            o = ov["results"].get(precision, {}).get(case)
            line += f" {o['min'] / s['min']:8.2f}x" if o else f" {'-':>9s}"
        print(line)

    for name, s in swift["results"].items():
        t = torch["results"].get(name)
        if t is None and not (ov and name in ov["results"].get("f32", {})):
            continue
        row(name, name, s, t, "f32")
    if swift_bf16:
        for name, s in swift_bf16["results"].items():
            row(f"{name} bf16", name, s, None, "bf16")
    memory = (f"peak resident memory: swift {swift['peak_rss_bytes'] / 2**20:.0f} MiB, "
              f"torch {torch['peak_rss_bytes'] / 2**20:.0f} MiB")
    if ov:
        memory += f", openvino {ov['peak_rss_bytes'] / 2**20:.0f} MiB (all its cases and precisions)"
    print(memory + f" (torch {torch.get('torch', '?')}" + (f", openvino {ov['openvino'].split('-')[0]}" if ov else "")
          + f", {threads} threads)")
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
