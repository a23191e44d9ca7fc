"""Name/shape manifests of real-size original-layout checkpoints (no weights), for the Swift detection and
key-mapping tests.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_single_file_manifests.py
For each real diffusers config in ../shared/reference-configs the models are built on the meta device,
converted to original names with original_layout.py, and checked against diffusers' own converter
(single_file_utils), which must map every tensor back to the model's name and shape. Writes
Tests/StableDiffusionTests/Fixtures/single_file/manifests/<name>.json:
{"global_step": N|null, "tensors": {original name: shape}, "diffusers": {component: {name: shape}}}
("diffusers" only where asked, to keep the files small).
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.dirname(__file__))
import original_layout as ol  # noqa: E402

REF = "../shared/reference-configs"
OUT = "Tests/StableDiffusionTests/Fixtures/single_file/manifests"


def meta_state(cls, cfg):
    with torch.device("meta"):
        model = cls.from_config(cfg) if hasattr(cls, "from_config") and cls not in (CLIPTextModel, CLIPTextModelWithProjection) else cls(cfg)
    return {k: v for k, v in model.state_dict().items()}


def shapes(d):
    return {k: list(v.shape) for k, v in sorted(d.items())}


def build(repo, name, global_step=None, with_diffusers=False, extra=None):
    ucfg = json.load(open(os.path.join(REF, repo, "unet", "config.json")))
    vcfg = json.load(open(os.path.join(REF, repo, "vae", "config.json")))
    tcfg = CLIPTextConfig.from_pretrained(os.path.join(REF, repo, "text_encoder"))
    unet = meta_state(UNet2DConditionModel, ucfg)
    vae = meta_state(AutoencoderKL, vcfg)
    text = meta_state(CLIPTextModel, tcfg)
    openclip = tcfg.hidden_size == 1024
    orig = {}
    orig.update(ol.unet_to_original(unet, ucfg))
    orig.update(ol.vae_to_original(vae, vcfg))
    if openclip:
        # OpenCLIP ViT-H has 24 blocks; SD 2's diffusers config keeps 23.
        orig.update(ol.openclip_to_original(text, extra_layers=1, dtype=torch.float32))
    else:
        orig.update(ol.clip_to_original(text))
    orig.update(ol.schedule_buffers())
    for k, s in (extra or {}).items():
        orig[k] = torch.empty(s, device="meta")

    # diffusers' converter must map everything back onto the models.
    back = sfu.convert_ldm_unet_checkpoint(orig, ucfg)
    assert shapes(back) == shapes(unet), f"{name}: unet mismatch {set(back) ^ set(unet)}"
    back = sfu.convert_ldm_vae_checkpoint(orig, vcfg)
    assert shapes(back) == shapes(vae), f"{name}: vae mismatch {set(back) ^ set(vae)}"
    with torch.device("meta"):
        tm = CLIPTextModel(tcfg)
    back = sfu.convert_open_clip_checkpoint(tm, orig) if openclip else sfu.convert_ldm_clip_checkpoint(orig)
    back = {k.removeprefix("text_model."): v for k, v in back.items() if not k.endswith("position_ids")}
    assert shapes(back) == shapes(text), f"{name}: text encoder mismatch {set(back) ^ set(text)}"

    doc = {"global_step": global_step, "tensors": shapes(orig)}
    if with_diffusers:
        doc["diffusers"] = {"unet": shapes(unet), "vae": shapes(vae), "text_encoder": shapes(text)}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(name, len(orig), "tensors", os.path.getsize(os.path.join(OUT, name + ".json")), "bytes")


build("runwayml-stable-diffusion-v1-5", "sd15", global_step=840000, with_diffusers=True)
build("stabilityai-stable-diffusion-2-1", "sd21-768v", global_step=110000, with_diffusers=True)
# SD 2.0 512-base's step: the one number diffusers (and this loader) read as "epsilon, 512".
build("stabilityai-stable-diffusion-2-1-base", "sd2-512-base", global_step=875000)
build("runwayml-stable-diffusion-inpainting", "sd15-inpainting", global_step=440000)
build("stabilityai-stable-diffusion-2-inpainting", "sd2-inpainting", global_step=200000)
build("stabilityai-stable-diffusion-2-depth", "sd2-depth", global_step=55000,
      extra={"depth_model.model.pretrained.model.cls_token": [1, 1, 1024], "depth_model.model.scratch.output_conv.4.weight": [1, 32, 1, 1]})
build("stabilityai-stable-diffusion-x4-upscaler", "x4-upscaler", global_step=1230000, with_diffusers=True,
      extra={"low_scale_model.betas": [350], "low_scale_model.alphas_cumprod": [350]})


def build_sdxl(repo, name, in_channels=None, with_diffusers=True):
    """SDXL in Stability's SGM layout: conditioner.embedders.0.transformer. (CLIP ViT-L) and
    conditioner.embedders.1.model. (OpenCLIP bigG, all 32 blocks, its projection); the refiner has bigG
    alone at conditioner.embedders.0.model.; label_emb holds the add_embedding MLP."""
    ucfg = json.load(open(os.path.join(REF, repo, "unet", "config.json")))
    if in_channels:
        ucfg["in_channels"] = in_channels
    vcfg = json.load(open(os.path.join(REF, repo, "vae", "config.json")))
    refiner = not os.path.exists(os.path.join(REF, repo, "text_encoder"))
    unet = meta_state(UNet2DConditionModel, ucfg)
    vae = meta_state(AutoencoderKL, vcfg)
    orig = {}
    orig.update(ol.unet_to_original(unet, ucfg))
    orig.update(ol.vae_to_original(vae, vcfg))
    texts = {}
    if not refiner:
        tcfg = CLIPTextConfig.from_pretrained(os.path.join(REF, repo, "text_encoder"))
        texts["text_encoder"] = meta_state(CLIPTextModel, tcfg)
        orig.update(ol.clip_to_original(texts["text_encoder"], prefix="conditioner.embedders.0.transformer."))
    tcfg2 = CLIPTextConfig.from_pretrained(os.path.join(REF, repo, "text_encoder_2"))
    texts["text_encoder_2"] = meta_state(CLIPTextModelWithProjection, tcfg2)
    bigg = "conditioner.embedders.0.model." if refiner else "conditioner.embedders.1.model."
    orig.update(ol.openclip_to_original(texts["text_encoder_2"], prefix=bigg, dtype=torch.float32))
    orig.update(ol.schedule_buffers())
    orig = {k: (v.to("meta") if v.device.type != "meta" else v) for k, v in orig.items()}

    assert sfu.infer_diffusers_model_type(orig) == ("xl_refiner" if refiner else "xl_inpaint" if in_channels == 9 else "xl_base"), name
    back = sfu.convert_ldm_unet_checkpoint(orig, ucfg)
    assert shapes(back) == shapes(unet), f"{name}: unet mismatch {set(back) ^ set(unet)}"
    back = sfu.convert_ldm_vae_checkpoint(orig, vcfg)
    assert shapes(back) == shapes(vae), f"{name}: vae mismatch {set(back) ^ set(vae)}"
    if not refiner:
        back = sfu.convert_ldm_clip_checkpoint(orig, remove_prefix="conditioner.embedders.0.transformer.")
        back = {k.removeprefix("text_model."): v for k, v in back.items() if not k.endswith("position_ids")}
        assert shapes(back) == shapes(texts["text_encoder"]), f"{name}: text encoder mismatch"
    with torch.device("meta"):
        tm = CLIPTextModelWithProjection(tcfg2)
    back = sfu.convert_open_clip_checkpoint(tm, orig, prefix=bigg)
    assert shapes(back) == shapes(texts["text_encoder_2"]), f"{name}: text encoder 2 mismatch {set(back) ^ set(texts['text_encoder_2'])}"

    doc = {"global_step": None, "tensors": shapes(orig)}
    if with_diffusers:
        doc["diffusers"] = {"unet": shapes(unet), "vae": shapes(vae)}
        doc["diffusers"].update({k: shapes(v) for k, v in texts.items()})
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(name, len(orig), "tensors", os.path.getsize(os.path.join(OUT, name + ".json")), "bytes")


build_sdxl("stabilityai-stable-diffusion-xl-base-1.0", "sdxl-base")
build_sdxl("stabilityai-stable-diffusion-xl-refiner-1.0", "sdxl-refiner")
build_sdxl("stabilityai-stable-diffusion-xl-base-1.0", "sdxl-inpainting", in_channels=9, with_diffusers=False)
