"""Single-file (original CompVis/Stability layout) fixtures from the bundled tiny models, and diffusers'
pictures for them via `from_single_file`.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_single_file_fixtures.py
Writes Tests/StableDiffusionTests/Fixtures/single_file/: checkpoints/*.safetensors|*.ckpt and one folder per
case (case.json, expected-0.png, tensors.safetensors with image0). The conversion to the original layout is
original_layout.py (independent of diffusers); diffusers' loader must give back the tiny folder's weights.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

sys.path.insert(0, os.path.dirname(__file__))
import original_layout as ol  # noqa: E402

OUT = "Tests/StableDiffusionTests/Fixtures/single_file"
CK = os.path.join(OUT, "checkpoints")
torch.set_num_threads(2)


def load_folder(root):
    sd = {}
    for comp, fname in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")):
        sd[comp] = load_file(os.path.join(root, comp, fname + ".safetensors"))
    cfg = {c: json.load(open(os.path.join(root, c, "config.json"))) for c in ("unet", "vae", "text_encoder")}
    return sd, cfg


def to_original(root, openclip, ema=False):
    sd, cfg = load_folder(root)
    unet = ol.unet_to_original(sd["unet"], cfg["unet"])
    out = dict(unet)
    if ema:
        # Like a training checkpoint: the EMA copy holds the weights to use, the raw weights differ.
        g = torch.Generator().manual_seed(3)
        out = {k: v + (torch.randn(v.shape, generator=g) * 0.05).to(v.dtype) for k, v in unet.items()}
    out.update(ol.vae_to_original(sd["vae"], cfg["vae"]))
    out.update(ol.openclip_to_original(sd["text_encoder"]) if openclip else ol.clip_to_original(sd["text_encoder"]))
    out.update(ol.schedule_buffers())
    if ema:
        out.update(ol.ema_copy(unet))
    return out


def check_same_weights(pipe, root):
    """diffusers' from_single_file must give the tiny folder's weights back exactly."""
    sd, _ = load_folder(root)
    for comp in ("unet", "vae", "text_encoder"):
        got = getattr(pipe, comp).state_dict()
        for k, v in sd[comp].items():
            kk = k if k in got else k.removeprefix("text_model.")
            assert kk in got, f"{comp}: {k} missing after from_single_file"
            assert torch.equal(got[kk].float(), v.float()), f"{comp}: {k} differs after from_single_file"


def write(name, state, ckpt=False, global_step=None):
    os.makedirs(CK, exist_ok=True)
    path = os.path.join(CK, name)
    if ckpt:
        torch.save({"state_dict": state, "global_step": global_step or 1000, "epoch": 1}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    os.chmod(path, 0o644)
    return path


def record(case, pipe, kwargs, seed, image=None, mask=None):
    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
    call = dict(kwargs)
    if image is not None:
        call.update(image=image, mask_image=mask)
    out = pipe(**call, generator=torch.Generator("cpu").manual_seed(seed))
    img = out.images[0]
    img.save(os.path.join(d, "expected-0.png"))
    save_file({"image0": torch.from_numpy(np.asarray(img).astype(np.float32))}, os.path.join(d, "tensors.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(dict(kwargs, seed=seed), f, indent=1)


def load_single(cls, path, root, **kw):
    pipe = cls.from_single_file(path, config=root, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False, **kw)
    check_same_weights(pipe, root)
    return pipe


def main():
    base = dict(prompt="a photograph of an astronaut riding a horse", negative_prompt="blurry", height=64, width=64,
                num_inference_steps=4, guidance_scale=7.5)

    # SD 1: safetensors; .ckpt with EMA (the tiny weights) and different non-EMA weights. diffusers reads the EMA
    # copy with extract_ema=True; the Swift loader prefers it by default.
    sd1 = to_original("Models/tiny-sd1", openclip=False)
    p = write("tiny-sd1.safetensors", {k: v for k, v in sd1.items()})
    pipe = load_single(StableDiffusionPipeline, p, "Models/tiny-sd1")
    record("sd1", pipe, base, seed=42)
    p = write("tiny-sd1.ckpt", to_original("Models/tiny-sd1", openclip=False, ema=True), ckpt=True, global_step=470000)
    load_single(StableDiffusionPipeline, p, "Models/tiny-sd1", extract_ema=True)

    # SD 2 (v-prediction, OpenCLIP text encoder; no extra block, since diffusers drops only resblocks.23 by name).
    sd2 = to_original("Models/tiny-sd2", openclip=True)
    p = write("tiny-sd2.safetensors", sd2)
    pipe = load_single(StableDiffusionPipeline, p, "Models/tiny-sd2")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    record("sd2", pipe, base, seed=1234)

    # Inpainting (9-channel UNet), with the inpaint9 fixture's image and mask.
    inp = to_original("Models/tiny-sd-inpainting", openclip=False)
    p = write("tiny-sd-inpainting.safetensors", inp)
    pipe = load_single(StableDiffusionInpaintPipeline, p, "Models/tiny-sd-inpainting")
    src = "Tests/StableDiffusionTests/Fixtures/pipelines/inpaint9_crop"
    image, mask = Image.open(os.path.join(src, "input.png")), Image.open(os.path.join(src, "mask.png"))
    record("inpainting", pipe, dict(base, strength=1.0), seed=21, image=image, mask=mask)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
