"""LCM fixtures on the bundled tiny SD 1.x model: diffusers' StableDiffusionPipeline with its scheduler switched to
LCMScheduler.from_config (the LCM-LoRA recipe: few steps, guidance 1 so no unconditional batch; and guidance 2
with one), two images per prompt, so the noise LCM draws between steps is checked per image.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_lcm_fixtures.py
Writes Tests/StableDiffusionTests/Fixtures/pipelines/lcm_*.
"""
import json
import os

import numpy as np
import torch
from diffusers import LCMScheduler, StableDiffusionPipeline
from safetensors.torch import save_file

OUT = "Tests/StableDiffusionTests/Fixtures/pipelines"
torch.set_num_threads(2)


def run_case(case, pipe, seed, kwargs):
    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
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
        json.dump(dict(kwargs, seed=seed, model="tiny-sd1", scheduler="LCMScheduler"), f, indent=1)
    print(case, [t.item() for t in pipe.scheduler.timesteps])


pipe = StableDiffusionPipeline.from_pretrained("Models/tiny-sd1", torch_dtype=torch.float32, safety_checker=None,
                                               requires_safety_checker=False)
pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
P = "a photograph of an astronaut riding a horse"
run_case("lcm_sd1_4steps_noguidance", pipe, 71, dict(prompt=P, height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
                                                      num_images_per_prompt=2))
run_case("lcm_sd1_6steps_guidance", pipe, 72, dict(prompt=P, negative_prompt="blurry", height=64, width=64, num_inference_steps=6,
                                                    guidance_scale=2.0))
