"""The bundled tiny SDXL model (diffusers' SDXL folder layout: two tokenizers, CLIPTextModel +
CLIPTextModelWithProjection of different widths, a text_time UNet with transformer_layers_per_block > 1,
fp16 weights) and diffusers' pictures for it.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_sdxl_fixtures.py
Writes Models/tiny-sdxl and Tests/StableDiffusionTests/Fixtures/pipelines/sdxl_*/.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline,
                       StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

sys.path.insert(0, os.path.dirname(__file__))
from tiny_models import randomise, test_image, test_mask, write_small_vocab  # noqa: E402

REF = "../shared/reference-configs/stabilityai-stable-diffusion-xl-base-1.0"
OUT = "Tests/StableDiffusionTests/Fixtures/pipelines"
ROOT = "Models/tiny-sdxl"
torch.set_num_threads(2)


def tokenizer_dir(name, ref_sub):
    d = os.path.join("/tmp", "tiny-sdxl-" + name)
    shutil.rmtree(d, ignore_errors=True)
    n = write_small_vocab(d)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(REF, ref_sub, f), d)
    return d, n


def build():
    torch.manual_seed(27)
    shutil.rmtree(ROOT, ignore_errors=True)
    tok1, vocab = tokenizer_dir("tok1", "tokenizer")
    tok2, _ = tokenizer_dir("tok2", "tokenizer_2")  # pads with "!" as the real tokenizer_2
    text_encoder = randomise(CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)))
    text_encoder_2 = randomise(CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=24, bos_token_id=0, eos_token_id=2, pad_token_id=1)))
    unet = randomise(UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 32, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), attention_head_dim=(2, 2, 4), use_linear_projection=True,
        cross_attention_dim=32 + 48, norm_num_groups=8, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24 + 6 * 8))
    vae = randomise(AutoencoderKL(
        sample_size=128, block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.13025,
        force_upcast=True), scale=0.02)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=CLIPTokenizer.from_pretrained(tok1),
        tokenizer_2=CLIPTokenizer.from_pretrained(tok2), unet=unet,
        scheduler=EulerDiscreteScheduler.from_pretrained(os.path.join(REF, "scheduler")), force_zeros_for_empty_prompt=True,
        add_watermarker=False)
    pipe.to(torch.float16)
    pipe.save_pretrained(ROOT, safe_serialization=True)
    # The real repos' tokenizer files: vocab.json + merges.txt and the two config files.
    for sub, src, ref_sub in (("tokenizer", tok1, "tokenizer"), ("tokenizer_2", tok2, "tokenizer_2")):
        d = os.path.join(ROOT, sub)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(src, f), d)
        for f in ("tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(REF, ref_sub, f), d)
    # The reference runs in fp32 on the stored fp16 weights, as the Swift engine does.
    return StableDiffusionXLPipeline.from_pretrained(ROOT, torch_dtype=torch.float32, add_watermarker=False)


def build_refiner(base):
    """The refiner's layout: text_encoder_2 and tokenizer_2 only, requires_aesthetics_score (5 time ids), a
    4-block UNet that attends to text_encoder_2's width alone; the base's VAE (an ensemble shares latents)."""
    torch.manual_seed(28)
    root = ROOT + "-refiner"
    shutil.rmtree(root, ignore_errors=True)
    tok2, vocab = tokenizer_dir("tok2", "tokenizer_2")
    text_encoder_2 = randomise(CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=24, bos_token_id=0, eos_token_id=2, pad_token_id=1)))
    unet = randomise(UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 32, 64, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=2, attention_head_dim=(2, 2, 4, 4), use_linear_projection=True, cross_attention_dim=48,
        norm_num_groups=8, addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=24 + 5 * 8))
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=base.vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=CLIPTokenizer.from_pretrained(tok2),
        unet=unet, scheduler=EulerDiscreteScheduler.from_pretrained(os.path.join(REF, "scheduler")), requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False, add_watermarker=False)
    pipe.to(torch.float16)
    pipe.save_pretrained(root, safe_serialization=True)
    d = os.path.join(root, "tokenizer_2")
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(tok2, f), d)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(REF, "tokenizer_2", f), d)
    base.to(torch.float32)
    return StableDiffusionXLImg2ImgPipeline.from_pretrained(root, torch_dtype=torch.float32, add_watermarker=False)


def run_ensemble(case, base, refiner, seed, kwargs, switch):
    """diffusers' "ensemble of expert denoisers": the base stops at `switch` and hands latents to the refiner."""
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    latents = base(**kwargs, denoising_end=switch, output_type="latent", generator=torch.Generator("cpu").manual_seed(seed)).images
    call = {k: v for k, v in kwargs.items() if k not in ("height", "width")}
    out = refiner(**call, image=latents, denoising_start=switch, generator=torch.Generator("cpu").manual_seed(seed))
    tensors = {"base_latents": latents.permute(0, 2, 3, 1).contiguous()}
    for i, img in enumerate(out.images):
        img.save(os.path.join(d, f"expected-{i}.png"))
        tensors[f"image{i}"] = torch.from_numpy(np.asarray(img).astype(np.float32))
    save_file(tensors, os.path.join(d, "tensors.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(dict(kwargs, seed=seed, refiner_switch=switch, model="tiny-sdxl", refiner="tiny-sdxl-refiner"), f, indent=1)
    print(case, [img.size for img in out.images])


def extra_config(pipe):
    return dict(requires_aesthetics_score=True, force_zeros_for_empty_prompt=False) if pipe.config.get("requires_aesthetics_score") else {}


def build_inpainting(base):
    """SDXL inpainting's layout: the base with a 9-channel UNet (latents + mask + masked-image latents)."""
    torch.manual_seed(29)
    root = ROOT + "-inpainting"
    shutil.rmtree(root, ignore_errors=True)
    config = dict(base.unet.config)
    config["in_channels"] = 9
    unet = randomise(UNet2DConditionModel.from_config(config))
    comps = dict(base.components, unet=unet)
    pipe = StableDiffusionXLInpaintPipeline(**comps, add_watermarker=False)
    pipe.to(torch.float16)
    pipe.save_pretrained(root, safe_serialization=True)
    for sub in ("tokenizer", "tokenizer_2"):
        shutil.rmtree(os.path.join(root, sub))
        shutil.copytree(os.path.join(ROOT, sub), os.path.join(root, sub))
    base.to(torch.float32)
    return StableDiffusionXLInpaintPipeline.from_pretrained(root, torch_dtype=torch.float32, add_watermarker=False)


def run_case(case, base, seed, kwargs, pipe_cls=StableDiffusionXLPipeline, scheduler_cls=None, image=None, scheduler_dir=None,
             mask=None):
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    pipe = pipe_cls(**base.components, add_watermarker=False, **extra_config(base))
    if scheduler_cls is not None:
        pipe.scheduler = scheduler_cls.from_config(base.scheduler.config)
    if scheduler_dir is not None:
        # A model's own scheduler config (SDXL-Turbo's), kept beside the case for the Swift test to load.
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_pretrained(scheduler_dir)
        shutil.copy(os.path.join(scheduler_dir, "scheduler_config.json"), d)
    captured = []

    def capture(p, i, t, cb):
        captured.append(cb["latents"].clone())
        return cb

    call = dict(kwargs)
    tensors = {}
    if image is not None:
        image.save(os.path.join(d, "input.png"))
        call["image"] = image
    if mask is not None:
        mask.save(os.path.join(d, "mask.png"))
        call["mask_image"] = mask
    out = pipe(**call, generator=torch.Generator("cpu").manual_seed(seed), callback_on_step_end=capture,
               callback_on_step_end_tensor_inputs=["latents"])
    for i, img in enumerate(out.images):
        img.save(os.path.join(d, f"expected-{i}.png"))
        tensors[f"image{i}"] = torch.from_numpy(np.asarray(img).astype(np.float32))
    tensors["final_latents"] = captured[-1].permute(0, 2, 3, 1).contiguous()
    tensors["first_step_latents"] = captured[0].permute(0, 2, 3, 1).contiguous().clone()
    cfg = kwargs.get("guidance_scale", 5.0) > 1
    pe, ne, pp, npp = pipe.encode_prompt(
        kwargs["prompt"], kwargs.get("prompt_2"), "cpu", kwargs.get("num_images_per_prompt", 1), cfg,
        kwargs.get("negative_prompt"), kwargs.get("negative_prompt_2"), clip_skip=kwargs.get("clip_skip"))
    tensors["prompt_embeds"] = pe.contiguous()
    tensors["pooled_prompt_embeds"] = pp.contiguous()
    if ne is not None:
        tensors["negative_prompt_embeds"] = ne.contiguous()
        tensors["negative_pooled_prompt_embeds"] = npp.contiguous()
    save_file(tensors, os.path.join(d, "tensors.safetensors"))
    meta = dict(kwargs, seed=seed, model="tiny-sdxl", scheduler=type(pipe.scheduler).__name__, pipeline=pipe_cls.__name__)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(case, [img.size for img in out.images])


P = "a photograph of an astronaut riding a horse"
N = "blurry, low quality"
base = build()
run_case("sdxl_txt2img", base, 42, dict(prompt=P, negative_prompt=N, num_images_per_prompt=2, height=64, width=96,
                                        num_inference_steps=6, guidance_scale=5.0))
# No negative prompt: force_zeros_for_empty_prompt gives zero negative embeddings; a second prompt; default size.
run_case("sdxl_txt2img_zero_negative", base, 7, dict(prompt=P, prompt_2="a red cube on a table, 4k", num_inference_steps=5,
                                                      guidance_scale=6.0))
# Micro-conditioning and clip_skip without guidance (no unconditional batch).
run_case("sdxl_txt2img_micro_nocfg", base, 5, dict(prompt=[P, "a red cube on a table"], height=64, width=64, num_inference_steps=4,
                                                    guidance_scale=1.0, clip_skip=1, original_size=(256, 192),
                                                    crops_coords_top_left=(16, 8), target_size=(96, 64)))
run_case("sdxl_txt2img_negative2_euler_a", base, 11, dict(prompt=P, negative_prompt=N, negative_prompt_2="ugly, deformed",
                                                          height=64, width=64, num_inference_steps=5, guidance_scale=7.0),
         scheduler_cls=EulerAncestralDiscreteScheduler)
# One prompt with every micro-conditioning flag and the default guidance (5.0), for the CLI.
run_case("sdxl_txt2img_micro_cli", base, 9, dict(prompt=P, height=64, width=64, num_inference_steps=4, original_size=(256, 192),
                                                  crops_coords_top_left=(16, 8), target_size=(96, 64)))
run_case("sdxl_img2img", base, 3, dict(prompt=P, negative_prompt=N, strength=0.6, num_inference_steps=8, guidance_scale=5.0),
         pipe_cls=StableDiffusionXLImg2ImgPipeline, image=test_image(96, 64))

# SDXL-Turbo: its Euler ancestral "trailing" scheduler, 1 and 4 steps, guidance 0 (no unconditional batch).
TURBO = "../shared/reference-configs/stabilityai-sdxl-turbo/scheduler"
run_case("sdxl_turbo_1step", base, 21, dict(prompt=P, height=64, width=64, num_inference_steps=1, guidance_scale=0.0),
         scheduler_dir=TURBO)
run_case("sdxl_turbo_4step", base, 22, dict(prompt=P, negative_prompt=N, height=64, width=96, num_inference_steps=4, guidance_scale=0.0),
         scheduler_dir=TURBO)
run_case("sdxl_turbo_img2img", base, 23, dict(prompt=P, strength=0.5, num_inference_steps=2, guidance_scale=0.0),
         pipe_cls=StableDiffusionXLImg2ImgPipeline, image=test_image(64, 64), scheduler_dir=TURBO)

refiner = build_refiner(base)
run_case("sdxl_refiner_img2img", refiner, 13, dict(prompt=P, negative_prompt=N, strength=0.5, num_inference_steps=6, guidance_scale=5.0,
                                                   aesthetic_score=7.0, negative_aesthetic_score=2.0),
         pipe_cls=StableDiffusionXLImg2ImgPipeline, image=test_image(64, 64))
run_ensemble("sdxl_base_refiner_ensemble", base, refiner, 17, dict(prompt=P, negative_prompt=N, num_inference_steps=10, height=64,
                                                                   width=64, guidance_scale=5.0), switch=0.7)

# Inpainting: the 9-channel model at diffusers' default strength (0.9999: the first step is skipped), and the
# 4-channel base (known latents blended back every step) with a padding-mask crop and strength 0.75.
inpainting = build_inpainting(base)
run_case("sdxl_inpaint9", inpainting, 41, dict(prompt=P, negative_prompt=N, height=64, width=64, num_inference_steps=6,
                                               guidance_scale=5.0), pipe_cls=StableDiffusionXLInpaintPipeline,
         image=test_image(64, 64), mask=test_mask(64, 64, (30, 34, 16, 12)))
run_case("sdxl_inpaint4_crop", base, 42, dict(prompt=P, height=64, width=64, num_inference_steps=6, guidance_scale=6.0,
                                              strength=0.75, padding_mask_crop=8), pipe_cls=StableDiffusionXLInpaintPipeline,
         image=test_image(112, 80), mask=test_mask(112, 80, (70, 36, 18, 14)))
