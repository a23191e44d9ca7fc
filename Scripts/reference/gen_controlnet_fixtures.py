"""ControlNet fixtures: tiny random ControlNets for the bundled tiny SD 1.x and SDXL models, and diffusers' pictures
with them (StableDiffusionControlNetPipeline, ...Img2Img..., ...Inpaint..., StableDiffusionXLControlNetPipeline).

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_controlnet_fixtures.py

Builds Models/tiny-controlnet-sd1 and Models/tiny-controlnet-sdxl (ControlNetModel.from_unet of the tiny UNets, every
weight then randomised, the zero convolutions strongly, or a test could not see the ControlNet) and a second SD 1.x
ControlNet for the two-ControlNet case under Tests/StableDiffusionTests/Fixtures/controlnet/second. Each case folder
has the control image(s) as PNG, case.json and diffusers' images and final latents; the script also prints how far
each picture is from the same call without ControlNet (the fixtures are only useful if that is large).

Writes Tests/StableDiffusionTests/Fixtures/pipelines/cn_*.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from diffusers import (ControlNetModel, StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetInpaintPipeline,
                       StableDiffusionControlNetPipeline, StableDiffusionPipeline, StableDiffusionXLControlNetPipeline,
                       StableDiffusionXLPipeline)
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from tiny_models import test_image, test_mask  # noqa: E402

OUT = "Tests/StableDiffusionTests/Fixtures/pipelines"
SECOND = "Tests/StableDiffusionTests/Fixtures/controlnet/second"
torch.set_num_threads(2)


def edge_image(w, h, seed):
    """A black picture with white lines and boxes: what a canny map looks like."""
    rng = np.random.default_rng(seed)
    a = np.zeros((h, w, 3), np.uint8)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - 8), rng.integers(0, h - 8)
        x1, y1 = rng.integers(x0 + 4, w), rng.integers(y0 + 4, h)
        a[y0, x0:x1] = 255
        a[y1 - 1, x0:x1] = 255
        a[y0:y1, x0] = 255
        a[y0:y1, x1 - 1] = 255
    return Image.fromarray(a)


def build_controlnet(unet, seed, path, widths):
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=widths)
    with torch.no_grad():
        for name, p in net.named_parameters():
            zero = name.startswith("controlnet_down_blocks") or name.startswith("controlnet_mid_block") or \
                name.startswith("controlnet_cond_embedding.conv_out")
            p.add_(torch.randn_like(p) * (0.3 if zero else 0.05))
    shutil.rmtree(path, ignore_errors=True)
    net.save_pretrained(path, safe_serialization=True)
    return ControlNetModel.from_pretrained(path, torch_dtype=torch.float32)


def save_case(case, out, captured, kwargs, seed, pipe, extra_images, reference):
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, img in extra_images.items():
        img.save(os.path.join(d, f"{name}.png"))
    tensors = {f"image{i}": torch.from_numpy(np.asarray(img).astype(np.float32)) for i, img in enumerate(out.images)}
    for i, img in enumerate(out.images):
        img.save(os.path.join(d, f"expected-{i}.png"))
    tensors["final_latents"] = captured[-1].permute(0, 2, 3, 1).contiguous()
    save_file(tensors, os.path.join(d, "tensors.safetensors"))
    record = {k: v for k, v in kwargs.items() if not isinstance(v, (Image.Image, list)) or k in ("prompt",)}
    for k in ("controlnet_conditioning_scale", "control_guidance_start", "control_guidance_end"):
        if k in kwargs:
            record[k] = kwargs[k]
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(dict(record, seed=seed, scheduler=type(pipe.scheduler).__name__, pipeline=type(pipe).__name__), f, indent=1)
    a = np.asarray(out.images[0]).astype(np.float64)
    b = np.asarray(reference.images[0]).astype(np.float64)
    mse = ((a - b) ** 2).mean()
    print(case, "PSNR against no ControlNet: %.1f dB" % (10 * np.log10(255 ** 2 / mse) if mse else float("inf")))


def run(case, pipe, plain, seed, kwargs, images, plain_kwargs=None):
    captured = []

    def capture(p, i, t, cb):
        captured.append(cb["latents"].clone())
        return cb

    out = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), callback_on_step_end=capture,
               callback_on_step_end_tensor_inputs=["latents"])
    ref = plain(**(plain_kwargs or {k: v for k, v in kwargs.items() if k not in (
        "image", "control_image", "controlnet_conditioning_scale", "control_guidance_start", "control_guidance_end", "guess_mode")}),
        generator=torch.Generator("cpu").manual_seed(seed))
    save_case(case, out, captured, kwargs, seed, pipe, images, ref)


P = "a photograph of an astronaut riding a horse"
N = "blurry, low quality"
common = dict(torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False)
base = StableDiffusionPipeline.from_pretrained("Models/tiny-sd1", **common)
cn1 = build_controlnet(base.unet, 81, "Models/tiny-controlnet-sd1", (4, 8, 8, 16))
cn2 = build_controlnet(base.unet, 82, SECOND, (4, 8, 8, 16))
parts = {k: v for k, v in base.components.items() if k not in ("image_encoder",)}

pipe = StableDiffusionControlNetPipeline(**parts, controlnet=cn1)
edges = edge_image(72, 56, 1)
# No height/width: the size is the control image's (72x56).
run("cn_sd1_txt2img", pipe, base, 91, dict(prompt=P, negative_prompt=N, image=edges, num_inference_steps=6,
                                            controlnet_conditioning_scale=0.8), {"control0": edges},
    plain_kwargs=dict(prompt=P, negative_prompt=N, num_inference_steps=6, height=56, width=72))

multi = StableDiffusionControlNetPipeline(**parts, controlnet=MultiControlNetModel([cn1, cn2]))
e1, e2 = edge_image(64, 64, 2), test_image(80, 48)  # the second is resized (stretched) to 64x64
run("cn_sd1_multi_window", multi, base, 92, dict(prompt=P, image=[e1, e2], height=64, width=64, num_inference_steps=5,
                                                  num_images_per_prompt=2, controlnet_conditioning_scale=[1.0, 0.5],
                                                  control_guidance_start=[0.0, 0.3], control_guidance_end=[0.6, 1.0]),
    {"control0": e1, "control1": e2})

run("cn_sd1_guess", pipe, base, 93, dict(prompt=P, negative_prompt=N, image=e1, height=64, width=64, num_inference_steps=5,
                                          guidance_scale=4.0, guess_mode=True), {"control0": e1})

i2i = StableDiffusionControlNetImg2ImgPipeline(**parts, controlnet=cn1)
init = test_image(64, 64)

def run_img2img():
    from diffusers import StableDiffusionImg2ImgPipeline
    plain = StableDiffusionImg2ImgPipeline(**parts)
    run("cn_sd1_img2img", i2i, plain, 94, dict(prompt=P, negative_prompt=N, image=init, control_image=e1, strength=0.7,
                                                num_inference_steps=6), {"input": init, "control0": e1},
        plain_kwargs=dict(prompt=P, negative_prompt=N, image=init, strength=0.7, num_inference_steps=6))


run_img2img()


def run_inpaint():
    from diffusers import StableDiffusionInpaintPipeline
    ip = StableDiffusionPipeline.from_pretrained("Models/tiny-sd-inpainting", **common)
    ip_parts = {k: v for k, v in ip.components.items() if k not in ("image_encoder",)}
    cn_inpaint = StableDiffusionControlNetInpaintPipeline(**ip_parts, controlnet=cn1)
    plain = StableDiffusionInpaintPipeline(**ip_parts)
    image = test_image(80, 64)
    mask = test_mask(80, 64, (50, 30, 16, 12))
    control = edge_image(80, 64, 3)
    kw = dict(prompt=P, negative_prompt=N, image=image, mask_image=mask, control_image=control, height=64, width=64,
              num_inference_steps=6, padding_mask_crop=8)
    run("cn_sd1_inpaint9_crop", cn_inpaint, plain, 95, kw, {"input": image, "mask": mask, "control0": control},
        plain_kwargs={k: v for k, v in kw.items() if k != "control_image"})


run_inpaint()


def run_sdxl():
    xl = StableDiffusionXLPipeline.from_pretrained("Models/tiny-sdxl", torch_dtype=torch.float32, add_watermarker=False)
    cnx = build_controlnet(xl.unet, 83, "Models/tiny-controlnet-sdxl", (4, 8, 8, 16))
    xl_parts = {k: v for k, v in xl.components.items() if k not in ("image_encoder", "feature_extractor")}
    pipe = StableDiffusionXLControlNetPipeline(**xl_parts, controlnet=cnx, add_watermarker=False)
    control = edge_image(64, 64, 4)
    run("cn_sdxl_txt2img", pipe, xl, 96, dict(prompt=P, negative_prompt=N, image=control, num_inference_steps=5,
                                              guidance_scale=5.0, controlnet_conditioning_scale=0.7,
                                              control_guidance_end=0.8), {"control0": control},
        plain_kwargs=dict(prompt=P, negative_prompt=N, num_inference_steps=5, guidance_scale=5.0, height=64, width=64))
    from diffusers import StableDiffusionXLControlNetImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline
    i2i = StableDiffusionXLControlNetImg2ImgPipeline(**xl_parts, controlnet=cnx, add_watermarker=False)
    plain = StableDiffusionXLImg2ImgPipeline(**xl_parts, add_watermarker=False)
    init = test_image(64, 64)
    kw = dict(prompt=P, negative_prompt=N, image=init, control_image=control, strength=0.7, num_inference_steps=6, guidance_scale=5.0)
    run("cn_sdxl_img2img", i2i, plain, 97, kw, {"input": init, "control0": control},
        plain_kwargs={k: v for k, v in kw.items() if k != "control_image"})


run_sdxl()
