"""bf16 reference: diffusers' txt2img on the bundled tiny SD 1 model under torch.autocast("cpu",
dtype=torch.bfloat16) (text encoder, UNet and VAE: what `--precision bf16` covers), for the case of the
sd1_txt2img fixture, plus how far that is from the fp32 picture, and how far with the VAE left in fp32.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_bf16_fixtures.py
Writes Tests/StableDiffusionTests/Fixtures/pipelines/sd1_txt2img_autocast_bf16/.
"""
import functools
import json
import os
import shutil

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import save_file

OUT = "Tests/StableDiffusionTests/Fixtures/pipelines/sd1_txt2img_autocast_bf16"
torch.set_num_threads(2)
CASE = dict(prompt="a photograph of an astronaut riding a horse", negative_prompt="blurry, low quality",
            num_images_per_prompt=2, height=64, width=96, num_inference_steps=8, guidance_scale=7.5)
SEED = 42


def autocast(module):
    """Runs `module.forward` under CPU bf16 autocast (matmuls and convolutions in bf16, norms in fp32)."""
    forward = module.forward

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return forward(*args, **kwargs)
    module.forward = wrapped


def images(pipe):
    out = pipe(**CASE, generator=torch.Generator("cpu").manual_seed(SEED))
    return np.stack([np.asarray(i).astype(np.float32) for i in out.images])


def psnr(a, b):
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def load():
    return StableDiffusionPipeline.from_pretrained("Models/tiny-sd1", dtype=torch.float32, safety_checker=None)


fp32 = images(load())
with torch.autocast("cpu", dtype=torch.bfloat16):
    bf16 = images(load())
pipe = load()
autocast(pipe.text_encoder)
autocast(pipe.unet)
vae_fp32 = images(pipe)

shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)
save_file({f"image{i}": torch.from_numpy(bf16[i]).contiguous() for i in range(len(bf16))},
          os.path.join(OUT, "tensors.safetensors"))
meta = dict(CASE, seed=SEED, model="Models/tiny-sd1", scheduler="PNDMScheduler", pipeline="StableDiffusionPipeline",
            autocast="the whole pipeline call (text encoder, UNet, VAE)",
            psnr_autocast_vs_fp32=[psnr(bf16[i], fp32[i]) for i in range(len(bf16))],
            psnr_autocast_vae_fp32_vs_fp32=[psnr(vae_fp32[i], fp32[i]) for i in range(len(bf16))])
with open(os.path.join(OUT, "case.json"), "w") as f:
    json.dump(meta, f, indent=1)
print(json.dumps(meta, indent=1))
