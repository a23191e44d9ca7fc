"""OpenVINO side of the per-model CPU benchmark: the compiled models of the OpenVINO export of the random SD 1.5
folder (Scripts/bench/make_sd15_folder.py --openvino), timed like `sd bench --suite sd15` and bench_torch.py; with
--suite sdxl, the SDXL base models of Scripts/bench/make_sdxl_ov.py, timed like `sd bench --suite sdxl`.

    ~/.sd-ov-venv/bin/python Scripts/bench/bench_openvino.py [--suite sd15|sdxl] [--runs N] [--threads 2]
        [--precisions f32 bf16] [--only unet_512 ...] [--ov-model ~/.cache/sd-bench/sd15-random-ov] [--json]

Cases: the UNet step (batch 2, the guidance pair) at 256x256 and 512x512, the text encoder (2 x 77 tokens),
the VAE decode at 512x512; each model reshaped to the static shape and compiled on CPU with
INFERENCE_PRECISION_HINT (f32 or bf16), INFERENCE_NUM_THREADS, NUM_STREAMS 1. Reports min and median seconds
per precision and the process's peak resident memory.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import openvino as ov

CASES = ["unet_256", "unet_512", "text_encoder", "vae_decode_512"]
CASES_XL = ["unet_1024", "text_encoder", "text_encoder_2", "vae_decode_1024"]
DEFAULT_MODEL = {"sd15": "~/.cache/sd-bench/sd15-random-ov", "sdxl": "~/.cache/sd-bench/sdxl-random-ov"}


def timed(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        print(f"  run {len(times)}: {times[-1]:.3f} s", file=sys.stderr, flush=True)
    return min(times), statistics.median(times)


def inputs_for_xl(case):
    """(model subfolder, {input name: array}) for one SDXL case (the input names make_sdxl_ov.py gave)."""
    rng = np.random.default_rng(0)
    if case == "unet_1024":
        return "unet", {"sample": rng.standard_normal((2, 4, 128, 128), dtype=np.float32),
                        "timestep": np.array([500], dtype=np.int64),
                        "encoder_hidden_states": rng.standard_normal((2, 77, 2048), dtype=np.float32),
                        "text_embeds": rng.standard_normal((2, 1280), dtype=np.float32),
                        "time_ids": np.array([[1024, 1024, 0, 0, 1024, 1024]] * 2, dtype=np.float32)}
    if case.startswith("text_encoder"):
        return case, {"input_ids": (np.arange(2 * 77, dtype=np.int64).reshape(2, 77) * 131) % 49408}
    return "vae_decoder", {"latent_sample": rng.standard_normal((1, 4, 128, 128), dtype=np.float32)}


def inputs_for(case):
    """(model subfolder, {input name: array}) for one case."""
    rng = np.random.default_rng(0)
    if case.startswith("unet_"):
        size = int(case.split("_")[1])
        return "unet", {"sample": rng.standard_normal((2, 4, size // 8, size // 8), dtype=np.float32),
                        "timestep": np.array([500], dtype=np.int64),
                        "encoder_hidden_states": rng.standard_normal((2, 77, 768), dtype=np.float32)}
    if case == "text_encoder":
        return "text_encoder", {"input_ids": (np.arange(2 * 77, dtype=np.int64).reshape(2, 77) * 131) % 49408}
    return "vae_decoder", {"latent_sample": rng.standard_normal((1, 4, 64, 64), dtype=np.float32)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--precisions", nargs="+", default=["f32", "bf16"], choices=["f32", "bf16"])
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--suite", choices=["sd15", "sdxl"], default="sd15")
    ap.add_argument("--ov-model", default=None, help="default: " + ", ".join(f"{k}: {v}" for k, v in DEFAULT_MODEL.items()))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    folder = os.path.expanduser(args.ov_model or DEFAULT_MODEL[args.suite])
    cases, inputs, maker = ((CASES_XL, inputs_for_xl, "Scripts/bench/make_sdxl_ov.py") if args.suite == "sdxl"
                            else (CASES, inputs_for, "Scripts/bench/make_sd15_folder.py --openvino"))
    core = ov.Core()
    results = {p: {} for p in args.precisions}
    for case in [c for c in cases if not args.only or c in args.only]:
        sub, feed = inputs(case)
        path = os.path.join(folder, sub, "openvino_model.xml")
        if not os.path.exists(path):
            sys.exit(f"no {path}: run {maker}")
        for precision in args.precisions:
            model = core.read_model(path)
            # Match inputs by name; the timestep's rank is whatever the export gave it.
            shapes = {}
            for port in model.inputs:
                name = port.get_any_name()
                if name not in feed:
                    sys.exit(f"{path}: unexpected input {name}")
                if name == "timestep" and port.get_partial_shape().rank.get_length() == 0:
                    feed[name] = feed[name].reshape(())
                shapes[port] = ov.PartialShape(list(feed[name].shape))
            model.reshape(shapes)
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                         "INFERENCE_NUM_THREADS": str(args.threads),
                                                         "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            results[precision][case] = timed(lambda: request.infer(feed), args.runs)
            print(f"{case} {precision} done", file=sys.stderr, flush=True)
            del request, compiled, model
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.json:
        print(json.dumps({"openvino": ov.__version__, "threads": args.threads, "peak_rss_bytes": peak,
                          "results": {p: {k: {"min": v[0], "median": v[1]} for k, v in r.items()}
                                      for p, r in results.items()}}))
    else:
        print(f"openvino {ov.__version__}, {args.threads} threads")
        for p, r in results.items():
            for k, (mn, md) in r.items():
                print(f"{k:16s} {p:5s} min {mn:8.3f} s   median {md:8.3f} s")
        print(f"peak RSS {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
