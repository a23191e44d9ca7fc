"""SDXL single files (Stability's SGM layout) from the bundled tiny SDXL base and refiner, and diffusers'
pictures for them via `from_single_file`.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_sdxl_single_file_fixtures.py
Writes Tests/StableDiffusionTests/Fixtures/single_file/checkpoints/tiny-sdxl*.safetensors and the cases
single_file/sdxl and single_file/sdxl_refiner. The layout comes from original_layout.py (independent of
diffusers): conditioner.embedders.0.transformer. (CLIP), conditioner.embedders.1.model. (OpenCLIP with its
projection; the refiner's at 0.model.), label_emb for add_embedding. diffusers' loader must detect the
right model type and give back the folders' weights exactly.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import original_layout as ol  # noqa: E402
from gen_single_file_fixtures import record, write  # noqa: E402

torch.set_num_threads(2)
COMPONENTS = (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model"),
              ("text_encoder_2", "model"))


def load_folder(root):
    sd, cfg = {}, {}
    for comp, fname in COMPONENTS:
        path = os.path.join(root, comp, fname + ".safetensors")
        if os.path.exists(path):
            sd[comp] = load_file(path)
            cfg[comp] = json.load(open(os.path.join(root, comp, "config.json")))
    return sd, cfg


def to_original(root):
    sd, cfg = load_folder(root)
    out = ol.unet_to_original(sd["unet"], cfg["unet"])
    out.update(ol.vae_to_original(sd["vae"], cfg["vae"]))
    if "text_encoder" in sd:
        out.update(ol.clip_to_original(sd["text_encoder"], prefix="conditioner.embedders.0.transformer."))
        bigg = "conditioner.embedders.1.model."
    else:
        bigg = "conditioner.embedders.0.model."
    out.update(ol.openclip_to_original(sd["text_encoder_2"], prefix=bigg, dtype=torch.float16))
    out.update(ol.schedule_buffers())
    return out


def load_single(cls, path, root):
    # diffusers tells xl_base/xl_refiner by bigG's block 9, which 3-block tiny encoders lack; the full-size
    # manifests (gen_single_file_manifests.py) check its detection. Here config= names the model.
    pipe = cls.from_single_file(path, config=root, torch_dtype=torch.float32)
    sd, _ = load_folder(root)
    for comp, weights in sd.items():
        got = getattr(pipe, comp).state_dict()
        for k, v in weights.items():
            kk = k if k in got else k.removeprefix("text_model.")
            assert kk in got, f"{comp}: {k} missing after from_single_file"
            assert torch.equal(got[kk].float(), v.float()), f"{comp}: {k} differs after from_single_file"
    return pipe


def main():
    kwargs = dict(prompt="a photograph of an astronaut riding a horse", negative_prompt="blurry", height=64, width=64,
                  num_inference_steps=4, guidance_scale=5.0)
    p = write("tiny-sdxl.safetensors", to_original("Models/tiny-sdxl"))
    pipe = load_single(StableDiffusionXLPipeline, p, "Models/tiny-sdxl")
    record("sdxl", pipe, kwargs, seed=31)

    p = write("tiny-sdxl-refiner.safetensors", to_original("Models/tiny-sdxl-refiner"))
    pipe = load_single(StableDiffusionXLImg2ImgPipeline, p, "Models/tiny-sdxl-refiner")
    image = Image.open("Tests/StableDiffusionTests/Fixtures/pipelines/sdxl_refiner_img2img/input.png")
    d = "Tests/StableDiffusionTests/Fixtures/single_file/sdxl_refiner"
    os.makedirs(d, exist_ok=True)
    image.save(os.path.join(d, "input.png"))
    refine = dict(kwargs, strength=0.5)
    refine.pop("height"), refine.pop("width")
    pipe.image = None
    record("sdxl_refiner", lambda **kw: pipe(image=image, **kw), refine, seed=32)
    print("wrote SDXL single files")


if __name__ == "__main__":
    main()
