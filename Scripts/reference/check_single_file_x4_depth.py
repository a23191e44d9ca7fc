"""Single-file x4 upscaler and SD 2 depth, end to end (not in CI, to keep fixtures small): the tiny models are
written in the original layout to /tmp, and `sd upscale` / `sd depth2img --model FILE --config <tiny folder>`
are compared with diffusers: `from_single_file(config=<tiny folder>)` for the upscaler; diffusers has no
single-file loader for the depth pipeline, so there the reference is its folder pipeline (same weights).

    swift build -c release && ~/.sd-ref-venv/bin/python Scripts/reference/check_single_file_x4_depth.py
"""
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from diffusers import StableDiffusionDepth2ImgPipeline, StableDiffusionUpscalePipeline

sys.path.insert(0, os.path.dirname(__file__))
import original_layout as ol  # noqa: E402
from gen_single_file_fixtures import check_same_weights, load_folder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SD = os.path.join(ROOT, ".build/release/sd")
PIPES = "Tests/StableDiffusionTests/Fixtures/pipelines"
torch.set_num_threads(2)


def to_original(root, extra):
    sd, cfg = load_folder(root)
    out = ol.unet_to_original(sd["unet"], cfg["unet"])
    out.update(ol.vae_to_original(sd["vae"], cfg["vae"]))
    out.update(ol.openclip_to_original(sd["text_encoder"]))
    out.update(ol.schedule_buffers())
    out.update(extra)
    return out


def psnr(a_path, b_image):
    a = np.asarray(Image.open(a_path).convert("RGB")).astype(np.float64)
    b = np.asarray(b_image.convert("RGB")).astype(np.float64)
    mse = ((a - b) ** 2).mean()
    return (float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)), np.abs(a - b).max()


def run(kind, root, cls, extra_tensors, cli, call, single=True):
    path = f"/tmp/single-{kind}.safetensors"
    save_file({k: v.contiguous() for k, v in to_original(root, extra_tensors).items()}, path)
    if single:
        pipe = cls.from_single_file(path, config=root, torch_dtype=torch.float32)
        check_same_weights(pipe, root)
    else:
        pipe = cls.from_pretrained(root, torch_dtype=torch.float32)
    ref = pipe(**call, generator=torch.Generator("cpu").manual_seed(5)).images[0]
    out = f"/tmp/single-{kind}.png"
    subprocess.run([SD] + cli + ["--model", path, "--config", root, "--prompt", call["prompt"], "--seed", "5",
                                 "--steps", str(call["num_inference_steps"]), "--output", out], check=True, capture_output=True)
    p, m = psnr(out, ref)
    print(f"{kind}: PSNR {p:.1f} dB, max channel difference {m:.0f}")


image = Image.open(os.path.join(PIPES, "upscale_x4", "input.png")).convert("RGB")
run("x4", "Models/tiny-sd-x4-upscaler", StableDiffusionUpscalePipeline,
    {"low_scale_model.betas": torch.linspace(1e-4, 2e-2, 350), "low_scale_model.alphas_cumprod": torch.linspace(1, 0.1, 350)},
    ["upscale", "--image", os.path.join(PIPES, "upscale_x4", "input.png"), "--noise-level", "20", "--guidance-scale", "9"],
    dict(prompt="a horse", image=image, num_inference_steps=4, noise_level=20, guidance_scale=9.0))

depth_dir = "Models/tiny-sd2-depth"
given = os.path.join(PIPES, "depth_given")
depth = torch.from_numpy(np.load(os.path.join(given, "depth.npy"))).float()
run("depth", depth_dir, StableDiffusionDepth2ImgPipeline,
    {"depth_model.model.scratch.output_conv.4.weight": torch.zeros(1, 32, 1, 1)},
    ["depth2img", "--image", os.path.join(given, "input.png"), "--depth-map", os.path.join(given, "depth.npy"), "--strength", "0.7"],
    dict(prompt="a horse", image=Image.open(os.path.join(given, "input.png")).convert("RGB"), depth_map=depth,
         num_inference_steps=4, strength=0.7), single=False)
