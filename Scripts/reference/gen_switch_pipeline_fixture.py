#!/usr/bin/env python3
"""Writes Tests/StableDiffusionTests/Fixtures/pipelines/sd1_switch_euler_defaults/: an end-to-end case for
`--scheduler euler` on a folder whose scheduler config carries `_use_default_values`.

The folder is Models/tiny-sd1 with its scheduler config replaced by the SD 1.5 PNDM config as diffusers
holds it after loading (and as diffusers ~0.22-0.23 wrote it into saved folders): `timestep_spacing`
"leading" and `prediction_type` listed as never set. diffusers' from_config drops those keys, so
EulerDiscreteScheduler.from_config(pipe.scheduler.config) uses Euler's own "linspace"; an engine that
reads the stale "leading" gives another picture (PSNR ~30 dB).
Run: ~/.sd-ref-venv/bin/python Scripts/reference/gen_switch_pipeline_fixture.py
"""
import json
import os
import shutil

import numpy as np
import torch
from diffusers import EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CONFIGS = os.path.join(ROOT, "..", "shared", "reference-configs")
OUT = os.path.join(ROOT, "Tests", "StableDiffusionTests", "Fixtures", "pipelines", "sd1_switch_euler_defaults")
CASE = dict(prompt="a photograph of an astronaut riding a horse", negative_prompt="blurry, low quality",
            height=64, width=64, num_inference_steps=7, guidance_scale=7.5, seed=17)


def main():
    torch.set_num_threads(2)
    with open(os.path.join(CONFIGS, "runwayml-stable-diffusion-v1-5", "scheduler", "scheduler_config.json")) as f:
        legacy = json.load(f)
    in_memory = dict(PNDMScheduler.from_config(legacy).config)
    assert sorted(in_memory["_use_default_values"]) == ["prediction_type", "timestep_spacing"], in_memory
    in_memory["_use_default_values"] = sorted(in_memory["_use_default_values"])

    # The model folder the Swift test builds too: tiny-sd1 with this scheduler config.
    folder = "/tmp/sd1-switch-defaults"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "Models", "tiny-sd1"), folder)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(in_memory, f, indent=2, sort_keys=True)

    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    assert pipe.scheduler.config.timestep_spacing == "leading"
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    assert pipe.scheduler.config.timestep_spacing == "linspace"
    kwargs = {k: v for k, v in CASE.items() if k != "seed"}
    out = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(CASE["seed"]))

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    shutil.copy(os.path.join(folder, "scheduler", "scheduler_config.json"), os.path.join(OUT, "scheduler_config.json"))
    out.images[0].save(os.path.join(OUT, "expected-0.png"))
    save_file({"image0": torch.from_numpy(np.asarray(out.images[0]).astype(np.float32))},
              os.path.join(OUT, "tensors.safetensors"))
    meta = dict(CASE, model="Models/tiny-sd1 + scheduler_config.json", scheduler="EulerDiscreteScheduler",
                pipeline="StableDiffusionPipeline", cli_scheduler="euler", timesteps=pipe.scheduler.timesteps.tolist())
    with open(os.path.join(OUT, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("timesteps", pipe.scheduler.timesteps.tolist())


if __name__ == "__main__":
    main()
