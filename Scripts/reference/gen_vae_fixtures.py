"""--vae fixtures: a tiny AutoencoderTiny (TAESD's architecture, narrower) and a second tiny AutoencoderKL for
the tiny SD 1.x model, with diffusers' pictures when the pipeline is built with `vae=` one of them.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_vae_fixtures.py
Writes Models/tiny-taesd, Models/tiny-vae-kl and Tests/StableDiffusionTests/Fixtures/pipelines/vae_*.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from tiny_models import randomise, test_image  # noqa: E402

OUT = "Tests/StableDiffusionTests/Fixtures/pipelines"
torch.set_num_threads(2)
P = "a photograph of an astronaut riding a horse"


def build():
    torch.manual_seed(81)
    shutil.rmtree("Models/tiny-taesd", ignore_errors=True)
    taesd = randomise(AutoencoderTiny(encoder_block_out_channels=(12, 12, 12, 12), decoder_block_out_channels=(12, 12, 12, 12),
                                      num_encoder_blocks=(1, 2, 2, 1), num_decoder_blocks=(1, 2, 2, 1), latent_channels=4), scale=0.1)
    taesd.save_pretrained("Models/tiny-taesd", safe_serialization=True)
    shutil.rmtree("Models/tiny-vae-kl", ignore_errors=True)
    config = json.load(open("Models/tiny-sd1/vae/config.json"))
    kl = randomise(AutoencoderKL.from_config(config), scale=0.02)
    kl.save_pretrained("Models/tiny-vae-kl", safe_serialization=True)
    return (AutoencoderTiny.from_pretrained("Models/tiny-taesd", torch_dtype=torch.float32),
            AutoencoderKL.from_pretrained("Models/tiny-vae-kl", torch_dtype=torch.float32))


def run_case(case, pipe, seed, kwargs, vae, image=None):
    d = os.path.join(OUT, case)
    os.makedirs(d, exist_ok=True)
    call = dict(kwargs)
    if image is not None:
        image.save(os.path.join(d, "input.png"))
        call["image"] = image
    out = pipe(**call, generator=torch.Generator("cpu").manual_seed(seed))
    for i, img in enumerate(out.images):
        img.save(os.path.join(d, f"expected-{i}.png"))
    save_file({f"image{i}": torch.from_numpy(np.asarray(img).astype(np.float32)) for i, img in enumerate(out.images)},
              os.path.join(d, "tensors.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(dict(kwargs, seed=seed, model="tiny-sd1", vae=vae, pipeline=type(pipe).__name__), f, indent=1)
    print(case, [img.size for img in out.images])


taesd, kl = build()
for name, vae in (("tiny-taesd", taesd), ("tiny-vae-kl", kl)):
    txt = StableDiffusionPipeline.from_pretrained("Models/tiny-sd1", vae=vae, torch_dtype=torch.float32, safety_checker=None,
                                                  requires_safety_checker=False)
    tag = "taesd" if "taesd" in name else "kl"
    run_case(f"vae_{tag}_txt2img", txt, 91, dict(prompt=P, negative_prompt="blurry", height=64, width=64, num_inference_steps=4,
                                                  guidance_scale=7.5, num_images_per_prompt=2), name)
    img = StableDiffusionImg2ImgPipeline(**txt.components)
    # With the tiny autoencoder the encode draws nothing: the noise is the only draw.
    run_case(f"vae_{tag}_img2img", img, 92, dict(prompt=P, num_inference_steps=6, guidance_scale=6.0, strength=0.6), name,
             image=test_image(64, 64))

# A1111-style standalone VAE files of tiny-vae-kl (original layout, without and with first_stage_model.): their
# pictures are vae_kl_*'s, the weights being the same.
import original_layout as ol  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

state = ol.vae_to_original(load_file("Models/tiny-vae-kl/diffusion_pytorch_model.safetensors"), json.load(open("Models/tiny-vae-kl/config.json")))
bare = {k.removeprefix("first_stage_model."): v.contiguous() for k, v in state.items()}
os.makedirs("Tests/StableDiffusionTests/Fixtures/single_file/vae", exist_ok=True)
save_file(bare, "Tests/StableDiffusionTests/Fixtures/single_file/vae/tiny-vae-kl.safetensors")
save_file({k: v.contiguous() for k, v in state.items()}, "Tests/StableDiffusionTests/Fixtures/single_file/vae/tiny-vae-kl-prefixed.safetensors")
print("wrote single-file VAEs")
