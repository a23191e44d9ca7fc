"""Bundled tiny models (real diffusers folder layout, random weights, fp16) and end-to-end pipeline
fixtures: diffusers' images for fixed seeds, plus intermediate tensors for debugging.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_pipeline_fixtures.py
Writes Models/tiny-sd1, Models/tiny-sd2 and Tests/StableDiffusionTests/Fixtures/pipelines/<case>/.
"""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from diffusers import (AutoencoderKL, DDIMScheduler, EulerAncestralDiscreteScheduler, PNDMScheduler,
                       DDPMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                       StableDiffusionDepth2ImgPipeline, StableDiffusionUpscalePipeline, UNet2DConditionModel)
from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

REF = "../shared/reference-configs"
OUT = "Tests/StableDiffusionTests/Fixtures/pipelines"
torch.set_num_threads(2)

from tiny_models import randomise, test_image, test_mask, write_small_vocab  # noqa: E402


def tiny_dpt():
    # A small hybrid DPT-MiDaS (the sd2-depth pattern: BiT stem, ViT, reassemble [1, 1, 1, 0.5]).
    backbone = dict(model_type="bit", num_channels=3, embedding_size=8, hidden_sizes=[16, 32, 64], depths=[1, 2, 1],
                    layer_type="bottleneck", global_padding="same", num_groups=4, embedding_dynamic_padding=True,
                    out_features=["stage1", "stage2", "stage3"])
    config = DPTConfig(is_hybrid=True, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                       image_size=64, patch_size=16, backbone_out_indices=[0, 1, 0, 1], reassemble_factors=[1, 1, 1, 0.5],
                       neck_hidden_sizes=[16, 32, 24, 40], fusion_hidden_size=16, backbone_featmap_shape=[1, 64, 4, 4],
                       neck_ignore_stages=[0, 1], readout_type="project", backbone_config=backbone)
    model = DPTForDepthEstimation(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        model.head.head[4].bias.add_(0.5)  # mostly positive depth after the final ReLU
    processor = DPTImageProcessor(do_normalize=True, do_resize=True, ensure_multiple_of=1, image_mean=[0.5] * 3,
                                  image_std=[0.5] * 3, keep_aspect_ratio=False, resample=2, size={"height": 64, "width": 64})
    return model.eval(), processor


def build_tiny(name, sd2, in_channels=4, seed=None, pipeline_cls=StableDiffusionPipeline, upscaler=False):
    torch.manual_seed(seed if seed is not None else (11 if sd2 else 10))
    root = os.path.join("Models", name)
    shutil.rmtree(root, ignore_errors=True)
    tok_dir = os.path.join("/tmp", name + "-tok")
    shutil.rmtree(tok_dir, ignore_errors=True)
    vocab_size = write_small_vocab(tok_dir)
    ref = "stabilityai-stable-diffusion-2-1" if sd2 else "runwayml-stable-diffusion-v1-5"
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(REF, ref, "tokenizer", f), tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)

    text_encoder = randomise(CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="gelu" if sd2 else "quick_gelu", projection_dim=32,
        bos_token_id=vocab_size - 2, eos_token_id=2 if not sd2 else vocab_size - 1, pad_token_id=1)))
    if upscaler:
        # The x4 upscaler's shape: 7 input channels, noise-level class embeddings, cross-attention-only
        # transformers in the first blocks, a 3-block VAE (scale factor 4).
        unet = randomise(UNet2DConditionModel(
            sample_size=32, in_channels=7, out_channels=4, block_out_channels=(32, 32, 64), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            norm_num_groups=8, attention_head_dim=4, num_class_embeds=1000, only_cross_attention=[True, True, False],
            use_linear_projection=True))
        vae = randomise(AutoencoderKL(
            sample_size=128, block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, scaling_factor=0.08333),
            scale=0.02)
        ref_up = "stabilityai-stable-diffusion-x4-upscaler"
        pipe = StableDiffusionUpscalePipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            low_res_scheduler=DDPMScheduler.from_pretrained(os.path.join(REF, ref_up, "low_res_scheduler")),
            scheduler=DDIMScheduler.from_pretrained(os.path.join(REF, ref_up, "scheduler")), max_noise_level=350)
    elif pipeline_cls is StableDiffusionDepth2ImgPipeline:
        unet = randomise(UNet2DConditionModel(
            sample_size=16, in_channels=5, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, norm_num_groups=8, attention_head_dim=[2, 4], use_linear_projection=True))
        vae = randomise(AutoencoderKL(
            sample_size=128, block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4), scale=0.02)
        depth_estimator, feature_extractor = tiny_dpt()
        pipe = StableDiffusionDepth2ImgPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
            scheduler=PNDMScheduler.from_pretrained(os.path.join(REF, "stabilityai-stable-diffusion-2-depth", "scheduler")),
            depth_estimator=depth_estimator, feature_extractor=feature_extractor)
    else:
        unet = randomise(UNet2DConditionModel(
            sample_size=16, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, norm_num_groups=8,
            attention_head_dim=[2, 4] if sd2 else 4, use_linear_projection=sd2, upcast_attention=sd2))
        vae = randomise(AutoencoderKL(
            sample_size=128, block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4), scale=0.02)
        scheduler_cls = DDIMScheduler if sd2 else PNDMScheduler
        scheduler = scheduler_cls.from_pretrained(os.path.join(REF, ref, "scheduler"))
        pipe = pipeline_cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16)
    pipe.save_pretrained(root, safe_serialization=True)
    # Keep exactly the tokenizer files the real repositories have: SD 1.x vocab.json + merges.txt,
    # and (to cover the other format) SD 2.x with tokenizer.json only.
    tdir = os.path.join(root, "tokenizer")
    for f in os.listdir(tdir):
        os.remove(os.path.join(tdir, f))
    if sd2:
        tokenizer.save_pretrained("/tmp/" + name + "-fast")
        shutil.copy(os.path.join("/tmp/" + name + "-fast", "tokenizer.json"), tdir)
    else:
        shutil.copy(os.path.join(tok_dir, "vocab.json"), tdir)
        shutil.copy(os.path.join(tok_dir, "merges.txt"), tdir)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(REF, ref, "tokenizer", f), tdir)
    # The reference computation runs in fp32 on the stored (fp16) weights, as the Swift engine does.
    extra = {} if upscaler or pipeline_cls is StableDiffusionDepth2ImgPipeline else dict(safety_checker=None, requires_safety_checker=False)
    pipe = pipeline_cls.from_pretrained(root, torch_dtype=torch.float32, **extra)
    return root, pipe


def run_case(case, pipe_cls, base_pipe, scheduler_cls, kwargs, image=None, mask=None, depth=None):
    d = os.path.join(OUT, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    pipe = pipe_cls(**base_pipe.components)
    if scheduler_cls is not None:
        pipe.scheduler = scheduler_cls.from_config(base_pipe.scheduler.config)
    tensors = {}
    captured = []

    def capture(p, i, t, cb):
        captured.append(cb["latents"].clone())
        return cb

    call = dict(kwargs)
    recorded = {}

    def record(name, fn):
        def wrapper(*a, **k):
            out = fn(*a, **k)
            recorded.setdefault(name, out)
            return out
        return wrapper

    if depth is not None:
        torch.save(depth, os.path.join(d, "depth.pt"))
        np.save(os.path.join(d, "depth.npy"), depth.numpy())
        save_file({"depth": depth.contiguous()}, os.path.join(d, "depth.safetensors"))
        call["depth_map"] = depth
    if pipe_cls is StableDiffusionDepth2ImgPipeline:
        original_prepare = pipe.prepare_depth_map
        pipe.prepare_depth_map = record("depth_mask", original_prepare)
    if mask is not None:
        mask.save(os.path.join(d, "mask.png"))
        call["mask_image"] = mask
        pipe.image_processor.preprocess = record("init_image", pipe.image_processor.preprocess)
        pipe.mask_processor.preprocess = record("mask_condition", pipe.mask_processor.preprocess)
        pipe.image_processor.postprocess = record("pre_overlay", pipe.image_processor.postprocess)
    if image is not None:
        image.save(os.path.join(d, "input.png"))
        call["image"] = image
        if mask is None:
            tensors["input_image"] = pipe.image_processor.preprocess(image).permute(0, 2, 3, 1).contiguous()
    if pipe_cls is StableDiffusionUpscalePipeline:
        # The upscaler only has the older per-step callback.
        call.update(callback=lambda i, t, lat: captured.append(lat.clone()), callback_steps=1)
    else:
        call.update(callback_on_step_end=capture, callback_on_step_end_tensor_inputs=["latents"])
    out = pipe(**call, generator=torch.Generator("cpu").manual_seed(kwargs_seed[case]))
    if mask is not None:
        tensors["input_image"] = recorded["init_image"].permute(0, 2, 3, 1).contiguous()
        tensors["mask_condition"] = recorded["mask_condition"].permute(0, 2, 3, 1).contiguous()
        tensors["pre_overlay"] = torch.from_numpy(np.stack([np.asarray(i) for i in recorded["pre_overlay"]])).float().contiguous()
    for i, img in enumerate(out.images):
        img.save(os.path.join(d, f"expected-{i}.png"))
        tensors[f"image{i}"] = torch.from_numpy(np.asarray(img).astype(np.float32))
    tensors["final_latents"] = captured[-1].permute(0, 2, 3, 1).contiguous()
    tensors["first_step_latents"] = captured[0].permute(0, 2, 3, 1).contiguous()
    prompt = kwargs["prompt"]
    if "depth_mask" in recorded:
        tensors["depth_mask"] = recorded["depth_mask"].permute(0, 2, 3, 1).contiguous()
    if image is not None and mask is None and pipe_cls in (StableDiffusionUpscalePipeline, StableDiffusionDepth2ImgPipeline):
        tensors["input_image"] = pipe.image_processor.preprocess(image).permute(0, 2, 3, 1).contiguous()
    pe, ne = pipe.encode_prompt(prompt, "cpu", kwargs.get("num_images_per_prompt", 1),
                                kwargs.get("guidance_scale", 7.5) > 1, kwargs.get("negative_prompt"))
    tensors["prompt_embeds"] = pe.contiguous()
    if ne is not None:
        tensors["negative_prompt_embeds"] = ne.contiguous()
    save_file(tensors, os.path.join(d, "tensors.safetensors"))
    meta = {k: v for k, v in kwargs.items()}
    meta["seed"] = kwargs_seed[case]
    meta["model"] = base_pipe.name_or_path if hasattr(base_pipe, "name_or_path") else ""
    meta["scheduler"] = type(pipe.scheduler).__name__
    meta["pipeline"] = pipe_cls.__name__
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(case, [img.size for img in out.images])


kwargs_seed = {"depth_given": 41, "depth_estimated": 42, "upscale_x4": 31, "upscale_x4_nocfg": 32, "inpaint9_crop": 21, "inpaint4_blend": 22, "inpaint9_strength_mask_size": 23, "sd1_txt2img": 42, "sd1_txt2img_batch": 7, "sd1_img2img_euler_a": 3, "sd2_txt2img": 1234, "sd2_txt2img_nocfg": 5}
P = "a photograph of an astronaut riding a horse"
N = "blurry, low quality"

root1, pipe1 = build_tiny("tiny-sd1", sd2=False)
run_case("sd1_txt2img", StableDiffusionPipeline, pipe1, None,
         dict(prompt=P, negative_prompt=N, num_images_per_prompt=2, height=64, width=96, num_inference_steps=8, guidance_scale=7.5))
run_case("sd1_txt2img_batch", StableDiffusionPipeline, pipe1, None,
         dict(prompt=[P, "a red cube on a table, 4k"], num_inference_steps=5, guidance_scale=5.0))
run_case("sd1_img2img_euler_a", StableDiffusionImg2ImgPipeline, pipe1, EulerAncestralDiscreteScheduler,
         dict(prompt=P, negative_prompt=N, strength=0.6, num_inference_steps=10, guidance_scale=7.5), image=test_image(96, 64))

root2, pipe2 = build_tiny("tiny-sd2", sd2=True)
run_case("sd2_txt2img", StableDiffusionPipeline, pipe2, None,
         dict(prompt=P, negative_prompt=N, num_images_per_prompt=2, height=64, width=96, num_inference_steps=6, guidance_scale=7.5))
run_case("sd2_txt2img_nocfg", StableDiffusionPipeline, pipe2, None,
         dict(prompt=P, num_inference_steps=4, guidance_scale=1.0, height=48, width=48))


root3, pipe3 = build_tiny("tiny-sd-inpainting", sd2=False, in_channels=9, seed=12, pipeline_cls=StableDiffusionInpaintPipeline)
big = test_image(160, 128)
run_case("inpaint9_crop", StableDiffusionInpaintPipeline, pipe3, None,
         dict(prompt=P, negative_prompt=N, num_images_per_prompt=2, height=64, width=64, num_inference_steps=6,
              guidance_scale=7.5, padding_mask_crop=8),
         image=big, mask=test_mask(160, 128, (100, 50, 20, 14)))
inpaint4 = StableDiffusionInpaintPipeline(**pipe1.components)
run_case("inpaint4_blend", StableDiffusionInpaintPipeline, inpaint4, None,
         dict(prompt=P, num_inference_steps=6, guidance_scale=6.0, height=64, width=96, strength=1.0),
         image=test_image(96, 64), mask=test_mask(96, 64, (40, 30, 25, 18)))
run_case("inpaint9_strength_mask_size", StableDiffusionInpaintPipeline, pipe3, None,
         dict(prompt=P, negative_prompt=N, num_inference_steps=10, guidance_scale=7.5, height=64, width=96, strength=0.6),
         image=test_image(96, 64), mask=test_mask(48, 40, (20, 20, 12, 10)))


root4, pipe4 = build_tiny("tiny-sd-x4-upscaler", sd2=True, seed=13, pipeline_cls=StableDiffusionUpscalePipeline, upscaler=True)
run_case("upscale_x4", StableDiffusionUpscalePipeline, pipe4, None,
         dict(prompt=P, negative_prompt=N, num_inference_steps=6, guidance_scale=9.0, noise_level=20, num_images_per_prompt=2),
         image=test_image(24, 16))
run_case("upscale_x4_nocfg", StableDiffusionUpscalePipeline, pipe4, None,
         dict(prompt=P, num_inference_steps=4, guidance_scale=1.0, noise_level=150),
         image=test_image(26, 19))

# Tiled VAE decoding (diffusers' tiled_decode) against the untiled decode, on the upscaler's VAE.
torch.manual_seed(33)
vae = pipe4.vae
z = torch.randn(1, 4, 40, 56)
with torch.no_grad():
    untiled = vae.decode(z).sample
    vae.enable_tiling()
    vae.tile_sample_min_size = 64
    vae.tile_latent_min_size = 16
    tiled = vae.tiled_decode(z).sample
    vae.disable_tiling()
d = os.path.join(OUT, "vae_tiled")
os.makedirs(d, exist_ok=True)
save_file({"latents": z.permute(0, 2, 3, 1).contiguous(), "untiled": untiled.permute(0, 2, 3, 1).contiguous(),
           "tiled": tiled.permute(0, 2, 3, 1).contiguous()}, os.path.join(d, "tensors.safetensors"))
print("vae_tiled", tuple(tiled.shape))


root5, pipe5 = build_tiny("tiny-sd2-depth", sd2=True, seed=14, pipeline_cls=StableDiffusionDepth2ImgPipeline)
yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 60), indexing="ij")
depth = (3 + 2 * torch.sin(xx * 5) * torch.cos(yy * 3) + xx).unsqueeze(0).float()
run_case("depth_given", StableDiffusionDepth2ImgPipeline, pipe5, None,
         dict(prompt=P, negative_prompt=N, num_inference_steps=8, guidance_scale=7.5, strength=0.7, num_images_per_prompt=2),
         image=test_image(100, 70), depth=depth)
run_case("depth_estimated", StableDiffusionDepth2ImgPipeline, pipe5, None,
         dict(prompt=P, num_inference_steps=6, guidance_scale=5.0, strength=0.8),
         image=test_image(96, 64))
