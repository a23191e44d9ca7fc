"""Full-size single-file check: writes a random-weight SD 1.5 (or, with --family sd21, SD 2.1 768-v) checkpoint in the original layout (fp16, as the
released files are), times `sd txt2img --verbose` loading it with the bundled configs (load seconds and peak
memory from its report), and compares the picture with diffusers' `from_single_file` on the same file.
Not run by CI (it writes ~2 GB, needs ~6 GB RAM and the venv).

    swift build -c release && ~/.sd-ref-venv/bin/python Scripts/reference/check_single_file_full_size.py [--ckpt] [--family sd21]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

sys.path.insert(0, os.path.dirname(__file__))
import original_layout as ol  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFS = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs")
FAMILIES = {"sd15": "runwayml-stable-diffusion-v1-5", "sd21": "stabilityai-stable-diffusion-2-1"}
REF = os.path.join(REFS, FAMILIES["sd15"])


def write_checkpoint(path, ckpt):
    torch.manual_seed(0)
    ucfg = json.load(open(os.path.join(REF, "unet", "config.json")))
    vcfg = json.load(open(os.path.join(REF, "vae", "config.json")))
    state = {}
    unet = UNet2DConditionModel.from_config(ucfg).half()
    state.update(ol.unet_to_original(unet.state_dict(), ucfg))
    del unet
    vae = AutoencoderKL.from_config(vcfg).half()
    state.update(ol.vae_to_original(vae.state_dict(), vcfg))
    del vae
    tcfg = CLIPTextConfig.from_pretrained(os.path.join(REF, "text_encoder"))
    text = CLIPTextModel(tcfg).half()
    if tcfg.hidden_size == 1024:
        # OpenCLIP ViT-H: 24 blocks, of which SD 2 (and its diffusers config) uses 23.
        state.update(ol.openclip_to_original(text.state_dict(), extra_layers=1))
    else:
        state.update(ol.clip_to_original(text.state_dict()))
    state.update(ol.schedule_buffers())
    if ckpt:
        torch.save({"state_dict": state, "global_step": 840000 if tcfg.hidden_size == 768 else 110000}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, path)


def config_folder(dirname):
    """A local diffusers config folder (configs + real CLIP BPE) so diffusers needs no network."""
    if os.path.exists(dirname):
        return dirname
    shutil.copytree(REF, dirname, ignore=shutil.ignore_patterns("*.yaml", "safety_checker", "feature_extractor"))
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(ROOT, "Tests/StableDiffusionTests/Fixtures/tokenizer/clip-bpe", f), os.path.join(dirname, "tokenizer"))
    idx = json.load(open(os.path.join(dirname, "model_index.json")))
    idx.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    json.dump(idx, open(os.path.join(dirname, "model_index.json"), "w"))
    return dirname


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="sd15")
    ap.add_argument("--ckpt", action="store_true", help="write a torch .ckpt instead of .safetensors")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    global REF
    REF = os.path.join(REFS, FAMILIES[args.family])
    args.dir = args.dir or f"/tmp/{args.family}-single"
    torch.set_num_threads(os.cpu_count() or 2)
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"{args.family}-random." + ("ckpt" if args.ckpt else "safetensors"))
    if not os.path.exists(path):
        t = time.time()
        write_checkpoint(path, args.ckpt)
        print(f"wrote {path} ({os.path.getsize(path) / 2**30:.2f} GiB) in {time.time() - t:.0f} s")
    out = os.path.join(args.dir, "swift.png")
    # No --config: detection and the bundled configs, as a user would run it.
    r = subprocess.run([os.path.join(ROOT, ".build/release/sd"), "txt2img", "--model", path, "--prompt", "a cat",
                        "--steps", str(args.steps), "--height", str(args.size), "--width", str(args.size), "--seed", "1",
                        "--output", out, "--verbose"], check=True, capture_output=True, text=True)
    load = re.search(r"loaded .* in ([\d.]+) s, peak memory (\d+) MiB", r.stderr)
    print(r.stderr.strip().splitlines()[0] if r.stderr else "")
    if load:
        print(f"sd load: {load.group(1)} s, peak memory at load {load.group(2)} MiB")
    pipe = StableDiffusionPipeline.from_single_file(path, config=config_folder(os.path.join(args.dir, "config")),
                                                    torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False)
    ref = np.asarray(pipe("a cat", num_inference_steps=args.steps, height=args.size, width=args.size,
                          generator=torch.Generator("cpu").manual_seed(1)).images[0]).astype(np.float64)
    ours = np.asarray(Image.open(out).convert("RGB")).astype(np.float64)
    mse = ((ours - ref) ** 2).mean()
    psnr = float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)
    print(f"PSNR vs diffusers from_single_file {psnr:.1f} dB, max channel difference {np.abs(ours - ref).max():.0f}")


if __name__ == "__main__":
    main()
