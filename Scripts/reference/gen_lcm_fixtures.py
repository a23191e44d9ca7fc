"""LCM fixtures on the bundled tiny SD 1.x model: diffusers' StableDiffusionPipeline with its scheduler switched to
LCMScheduler.from_config (the LCM-LoRA recipe: few steps, guidance 1 so no unconditional batch; and guidance 2
with one), two images per prompt, so the noise LCM draws between steps is checked per image.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_lcm_fixtures.py
Also builds Models/tiny-lcm: an LCM-distilled layout (LatentConsistencyModelPipeline, LCM_Dreamshaper_v7's
scheduler config, a UNet with time_cond_proj_dim taking the guidance-scale embedding) sharing tiny-sd1's text
encoder, tokenizer and VAE, and records diffusers' pictures for it.

Writes Tests/StableDiffusionTests/Fixtures/pipelines/lcm_*.
"""
import json
import os

import numpy as np
import torch
import shutil
import sys

from diffusers import (AutoPipelineForImage2Image, EulerDiscreteScheduler, LatentConsistencyModelPipeline, LCMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline, TCDScheduler,
                       UNet2DConditionModel)

sys.path.insert(0, os.path.dirname(__file__))
from tiny_models import randomise, test_image  # noqa: E402
from safetensors.torch import save_file

OUT = "Tests/StableDiffusionTests/Fixtures/pipelines"
torch.set_num_threads(2)


def run_case(case, pipe, seed, kwargs, model="tiny-sd1", image=None):
    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
    if image is not None:
        image.save(os.path.join(d, "input.png"))
        kwargs = dict(kwargs, image=image)
    captured = []

    def capture(p, i, t, cb):
        captured.append(cb["latents"].clone())
        return cb

    out = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), callback_on_step_end=capture,
               callback_on_step_end_tensor_inputs=["latents"])
    tensors = {f"image{i}": torch.from_numpy(np.asarray(img).astype(np.float32)) for i, img in enumerate(out.images)}
    for i, img in enumerate(out.images):
        img.save(os.path.join(d, f"expected-{i}.png"))
    tensors["final_latents"] = captured[-1].permute(0, 2, 3, 1).contiguous()
    save_file(tensors, os.path.join(d, "tensors.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(dict({k: v for k, v in kwargs.items() if k != "image"}, seed=seed, model=model, scheduler=type(pipe.scheduler).__name__,
                       pipeline=type(pipe).__name__), f, indent=1)
    print(case, [t.item() for t in pipe.scheduler.timesteps])


pipe = StableDiffusionPipeline.from_pretrained("Models/tiny-sd1", torch_dtype=torch.float32, safety_checker=None,
                                               requires_safety_checker=False)
pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
P = "a photograph of an astronaut riding a horse"
run_case("lcm_sd1_4steps_noguidance", pipe, 71, dict(prompt=P, height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
                                                      num_images_per_prompt=2))
run_case("lcm_sd1_6steps_guidance", pipe, 72, dict(prompt=P, negative_prompt="blurry", height=64, width=64, num_inference_steps=6,
                                                    guidance_scale=2.0))


def build_lcm():
    """tiny-sd1 with an LCM-distilled UNet (time_cond_proj_dim 16) and LCM_Dreamshaper_v7's scheduler."""
    torch.manual_seed(73)
    root = "Models/tiny-lcm"
    shutil.rmtree(root, ignore_errors=True)
    base = StableDiffusionPipeline.from_pretrained("Models/tiny-sd1", torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    config = dict(base.unet.config)
    config["time_cond_proj_dim"] = 16
    unet = randomise(UNet2DConditionModel.from_config(config))
    scheduler = LCMScheduler.from_pretrained("../shared/reference-configs/SimianLuo-LCM_Dreamshaper_v7/scheduler")
    pipe = LatentConsistencyModelPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=unet,
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.save_pretrained(root, safe_serialization=True)
    shutil.rmtree(os.path.join(root, "tokenizer"))
    shutil.copytree("Models/tiny-sd1/tokenizer", os.path.join(root, "tokenizer"))
    return LatentConsistencyModelPipeline.from_pretrained(root, torch_dtype=torch.float32, safety_checker=None,
                                                          requires_safety_checker=False)


lcm = build_lcm()
# The LCM pipeline's defaults: 4 steps, guidance 8.5 (embedded as w = 7.5; no unconditional batch).
run_case("lcm_distilled_default", lcm, 74, dict(prompt=P, height=64, width=64, num_inference_steps=4, guidance_scale=8.5,
                                                 num_images_per_prompt=2), model="tiny-lcm")
# A shorter distillation schedule for the call (the pipeline's original_inference_steps argument): other timesteps.
run_case("lcm_distilled_original20", lcm, 79, dict(prompt=P, height=64, width=64, num_inference_steps=4, guidance_scale=8.5,
                                                   original_inference_steps=20), model="tiny-lcm")
# Image-to-image on the LCM folder as AutoPipelineForImage2Image picks it: LatentConsistencyModelImg2ImgPipeline, whose
# strength shortens the distillation schedule the steps are taken from (all the steps run).
img2img = AutoPipelineForImage2Image.from_pipe(lcm)
assert type(img2img).__name__ == "LatentConsistencyModelImg2ImgPipeline", type(img2img).__name__
run_case("lcm_distilled_img2img", img2img, 75, dict(prompt=P, num_inference_steps=4, guidance_scale=4.0, strength=0.7),
         model="tiny-lcm", image=test_image(64, 64))

# TCD (the TCD-LoRA recipe's scheduler): the pipeline's eta is TCD's gamma; 0.3 as the model cards use.
tcd = StableDiffusionPipeline.from_pretrained("Models/tiny-sd1", torch_dtype=torch.float32, safety_checker=None,
                                              requires_safety_checker=False)
tcd.scheduler = TCDScheduler.from_config(tcd.scheduler.config)
run_case("tcd_sd1_eta03", tcd, 76, dict(prompt=P, height=64, width=64, num_inference_steps=4, guidance_scale=1.0, eta=0.3,
                                         num_images_per_prompt=2))
run_case("tcd_sd1_eta0_guidance", tcd, 77, dict(prompt=P, negative_prompt="blurry", height=64, width=64, num_inference_steps=5,
                                                 guidance_scale=2.0))

# SD-Turbo's recipe (SD 2.1 base architecture; Euler with "trailing" spacing; 1 step; guidance 0, so one UNet batch) on
# the tiny SD 2 model, two images.
turbo = StableDiffusionPipeline.from_pretrained("Models/tiny-sd2", torch_dtype=torch.float32, safety_checker=None,
                                                requires_safety_checker=False)
turbo.scheduler = EulerDiscreteScheduler.from_config(turbo.scheduler.config, timestep_spacing="trailing")
run_case("sd_turbo_1step", turbo, 78, dict(prompt=P, height=64, width=64, num_inference_steps=1, guidance_scale=0.0,
                                            num_images_per_prompt=2), model="tiny-sd2")
