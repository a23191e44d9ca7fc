"""End-to-end check on the real SD 1.5 architecture at full size: writes a diffusers folder with random fp16
weights (as save_pretrained does), runs `sd txt2img` on it and diffusers on the same folder with the same
seed, and prints the PSNR between the two PNGs. Not run by CI (it writes ~2 GB and needs the venv).

    swift build -c release && ~/.sd-ref-venv/bin/python Scripts/reference/check_full_size.py [--dir /tmp/sd15]
"""
import argparse
import os
import shutil
import subprocess

import numpy as np
import torch
from PIL import Image
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs", "runwayml-stable-diffusion-v1-5")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/sd15")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    if not os.path.exists(os.path.join(args.dir, "model_index.json")):
        tok = args.dir + "-tokenizer"
        os.makedirs(tok, exist_ok=True)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(ROOT, "Tests/StableDiffusionTests/Fixtures/tokenizer/clip-bpe", f), tok)
        for f in ("tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(REF, "tokenizer", f), tok)
        torch.manual_seed(0)
        pipe = StableDiffusionPipeline(
            vae=AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(REF, "vae"))),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(REF, "text_encoder"))),
            tokenizer=CLIPTokenizer.from_pretrained(tok),
            unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(REF, "unet"))),
            scheduler=PNDMScheduler.from_pretrained(os.path.join(REF, "scheduler")),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.to(torch.float16).save_pretrained(args.dir, safe_serialization=True)
    out = os.path.join(args.dir, "swift.png")
    subprocess.run([os.path.join(ROOT, ".build/release/sd"), "txt2img", "--model", args.dir, "--prompt", "a cat",
                    "--steps", str(args.steps), "--height", str(args.size), "--width", str(args.size), "--seed", "1",
                    "--output", out, "--verbose"], check=True)
    pipe = StableDiffusionPipeline.from_pretrained(args.dir, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    ref = np.asarray(pipe("a cat", num_inference_steps=args.steps, height=args.size, width=args.size,
                          generator=torch.Generator("cpu").manual_seed(1)).images[0]).astype(np.float64)
    ours = np.asarray(Image.open(out).convert("RGB")).astype(np.float64)
    mse = ((ours - ref) ** 2).mean()
    psnr = float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)
    print(f"PSNR {psnr:.1f} dB, max channel difference {np.abs(ours - ref).max():.0f}")


if __name__ == "__main__":
    main()
