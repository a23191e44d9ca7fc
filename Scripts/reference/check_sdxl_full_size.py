"""Full-size SDXL base check: writes a diffusers folder of the real SDXL base architecture with random weights
(fp16 files, as the released repo's fp16 variant; ~7 GB), then runs the whole text-to-image at 1024x1024 with
`sd txt2img` (fp32, and bf16 where the CPU has it) and with diffusers' StableDiffusionXLPipeline in fp32 on the
same folder and seed, each as its own process under /usr/bin/time: wall seconds, peak resident memory, sd's load
time, and the PSNR of each of sd's pictures against diffusers'. Not run by CI (it writes ~7 GB, needs ~14 GB RAM
and minutes per step on 2 cores).

    swift build -c release && ~/.sd-ref-venv/bin/python Scripts/reference/check_sdxl_full_size.py \
        [--dir /tmp/sdxl-full] [--size 1024] [--steps 2] [--precisions fp32 bf16]

The seconds of a longer run follow from two runs of different --steps: the difference is the steps' share.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs", "stabilityai-stable-diffusion-xl-base-1.0")
PROMPT = "a photograph of an astronaut riding a horse"


def make_folder(out):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    torch.manual_seed(0)
    # Built and written one component at a time in fp16, so the peak stays near the UNet's fp32 size.
    parts = {}
    for name, make in (("text_encoder", lambda: CLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(REF, "text_encoder")))),
                       ("text_encoder_2", lambda: CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(os.path.join(REF, "text_encoder_2")))),
                       ("vae", lambda: AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(REF, "vae")))),
                       ("unet", lambda: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(REF, "unet"))))):
        parts[name] = make().float().to(torch.float16)
        print(f"built {name}", file=sys.stderr, flush=True)
    pipe = StableDiffusionXLPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
        tokenizer=CLIPTokenizer.from_pretrained(os.path.join(REF, "tokenizer")),
        tokenizer_2=CLIPTokenizer.from_pretrained(os.path.join(REF, "tokenizer_2")), unet=parts["unet"],
        scheduler=EulerDiscreteScheduler.from_pretrained(os.path.join(REF, "scheduler")))
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, out)


def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (wall seconds, peak RSS MiB, stderr)."""
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    seconds = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))) if wall else float("nan")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    return seconds, peak, r.stderr


def reference(folder, size, steps, out):
    """diffusers' picture (run as a child of this script, so its memory is its own)."""
    from diffusers import StableDiffusionXLPipeline
    torch.set_num_threads(os.cpu_count() or 2)
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPT, num_inference_steps=steps, height=size, width=size, generator=torch.Generator("cpu").manual_seed(1)).images[0]
    image.save(out)


def psnr(a, b):
    x = np.asarray(Image.open(a).convert("RGB")).astype(np.float64)
    y = np.asarray(Image.open(b).convert("RGB")).astype(np.float64)
    mse = ((x - y) ** 2).mean()
    return (float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)), float(np.abs(x - y).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp/sdxl-full")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--reference-only", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_only:
        reference(args.dir, args.size, args.steps, args.reference_only)
        return
    if args.make_only:
        make_folder(args.dir)
        return
    if not os.path.exists(os.path.join(args.dir, "model_index.json")):
        # In a child: the memory torch held while building does not go back to the system, and the fp32 run
        # after it needs all it can get (an sd fp32 run was OOM-killed beside a parent that built in-process).
        subprocess.run([sys.executable, os.path.abspath(__file__), "--dir", args.dir, "--make-only"], check=True)
    sd = os.path.join(ROOT, ".build/release/sd")
    rows = {}
    for precision in args.precisions:
        out = os.path.join(args.dir, f"swift-{precision}.png")
        wall, peak, err = timed([sd, "txt2img", "--model", args.dir, "--prompt", PROMPT, "--steps", str(args.steps),
                                 "--width", str(args.size), "--height", str(args.size), "--seed", "1",
                                 "--precision", precision, "--output", out, "--verbose"])
        load = re.search(r"loaded .* in ([\d.]+) s", err)
        rows[f"sd {precision}"] = {"wall_s": wall, "peak_mib": peak, "load_s": float(load.group(1)) if load else None, "png": out}
        print(f"sd {precision}: {wall:.1f} s, peak {peak:.0f} MiB", file=sys.stderr, flush=True)
    ref = os.path.join(args.dir, "diffusers.png")
    wall, peak, _ = timed([sys.executable, os.path.abspath(__file__), "--dir", args.dir, "--size", str(args.size),
                           "--steps", str(args.steps), "--reference-only", ref])
    rows["diffusers fp32"] = {"wall_s": wall, "peak_mib": peak, "png": ref}
    for name, row in rows.items():
        if name.startswith("sd "):
            row["psnr_db"], row["max_diff"] = psnr(row["png"], ref)
    print(json.dumps({"size": args.size, "steps": args.steps, "threads": os.cpu_count(), "torch": torch.__version__,
                      "results": rows}, indent=1))
    for name, row in rows.items():
        extra = f", PSNR {row['psnr_db']:.1f} dB, max diff {row['max_diff']:.0f}" if "psnr_db" in row else ""
        load = f", load {row['load_s']:.1f} s" if row.get("load_s") else ""
        print(f"{name:16s} {row['wall_s']:8.1f} s  peak {row['peak_mib']:8.0f} MiB{load}{extra}")


if __name__ == "__main__":
    main()
