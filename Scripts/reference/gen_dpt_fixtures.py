"""DPTForDepthEstimation (hybrid DPT-MiDaS) and DPTImageProcessor fixtures, from transformers 5.24.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_dpt_fixtures.py
Writes Tests/StableDiffusionTests/Fixtures/dpt/<case>/{config.json,preprocessor_config.json,model.safetensors,io.safetensors}
Tests/StableDiffusionTests/Fixtures/dpt/sd2-depth/ (copies of the reconstructed configs)
and Tests/StableDiffusionTests/Fixtures/manifests/stabilityai-stable-diffusion-2-depth-depth_estimator.json.

Each case: a small random hybrid config (fp16 weights; the reference runs in fp32 on the fp16-rounded weights),
an 8-bit non-square RGB image, the processor's pixel_values (the torchvision-backed DPTImageProcessor that
transformers 5.24 gives for this folder) and the model's predicted_depth on them.
"""
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

ROOT = "Tests/StableDiffusionTests/Fixtures"
REAL = "../shared/reference-configs/stabilityai-stable-diffusion-2-depth"
if not os.path.isdir(REAL):
    REAL = "/work/shared/reference-configs/stabilityai-stable-diffusion-2-depth"
torch.manual_seed(0)
torch.set_num_threads(2)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def tiny_backbone(**kw):
    cfg = dict(model_type="bit", num_channels=3, embedding_size=8, hidden_sizes=[16, 32, 64], depths=[1, 2, 1],
               layer_type="bottleneck", global_padding="same", num_groups=4, embedding_dynamic_padding=True,
               out_features=["stage1", "stage2", "stage3"])
    cfg.update(kw)
    return cfg


CASES = {
    # The sd2-depth pattern: reassemble [1, 1, 1, 0.5], no batch norm, readout "project".
    "hybrid": dict(
        config=dict(is_hybrid=True, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                    image_size=64, patch_size=16, backbone_out_indices=[0, 1, 0, 1], reassemble_factors=[1, 1, 1, 0.5],
                    neck_hidden_sizes=[16, 32, 24, 40], fusion_hidden_size=16, backbone_featmap_shape=[1, 64, 4, 4],
                    neck_ignore_stages=[0, 1], readout_type="project", backbone_config=tiny_backbone()),
        processor=dict(do_normalize=True, do_resize=True, ensure_multiple_of=1, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                       keep_aspect_ratio=False, resample=2, size={"height": 64, "width": 64}),
        images=[(37, 50)],
        # Processor only: bilinear downscaling, and an image already at the model size (no resize).
        extra_images=[(130, 97), (64, 64)]),
    # Other paths: an upsampling (transposed conv) reassemble stage whose map then needs the fusion's bilinear
    # residual resize, batch norm in the fusion units, bicubic downscaling, a batch of two.
    "variant": dict(
        config=dict(is_hybrid=True, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
                    image_size=64, patch_size=16, backbone_out_indices=[2, 5, 0, 1], reassemble_factors=[1, 1, 2, 0.5],
                    neck_hidden_sizes=[16, 32, 16, 24], fusion_hidden_size=8, backbone_featmap_shape=[1, 64, 4, 4],
                    neck_ignore_stages=[0, 1], use_batch_norm_in_fusion_residual=True, layer_norm_eps=1e-6,
                    backbone_config=tiny_backbone(global_padding="same")),
        processor=dict(do_normalize=True, do_resize=True, ensure_multiple_of=1, image_mean=[0.5, 0.4, 0.3],
                       image_std=[0.2, 0.3, 0.25], keep_aspect_ratio=False, resample=3, size={"height": 64, "width": 64}),
        images=[(97, 71), (41, 83)]),
}


def randomise(model):
    # Default inits leave norms at 1/0; perturb everything so a mis-mapped weight shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
        # Lift the last conv so most of the ReLU output is positive (a zero map compares nothing).
        model.head.head[4].bias.add_(0.5)
    return model.half().float().eval()


def image(h, w, seed):
    g = np.random.default_rng(seed)
    # Smooth gradients plus noise so resampling weights matter.
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
    return np.clip(base + g.integers(-60, 60, size=(h, w, 3)), 0, 255).astype(np.uint8)


def make_case(name, spec):
    d = os.path.join(ROOT, "dpt", name)
    os.makedirs(d, exist_ok=True)
    config = DPTConfig(**spec["config"])
    model = randomise(DPTForDepthEstimation(config))
    config.save_pretrained(d)
    sd = {k: v.half().contiguous() if v.is_floating_point() else v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(dict(spec["processor"], feature_extractor_type="DPTFeatureExtractor"), f, indent=1)
    processor = DPTImageProcessor.from_pretrained(d)
    assert type(processor).__name__ == "DPTImageProcessor" and processor.backend == "torchvision", processor
    io = {}
    pils = []
    for i, (h, w) in enumerate(spec["images"]):
        rgb = image(h, w, i + len(name))
        io[f"image{i}"] = torch.from_numpy(rgb.astype(np.float32))
        pils.append(Image.fromarray(rgb))
        one = processor(images=pils[-1], return_tensors="pt").pixel_values
        io[f"pixel_values{i}"] = nhwc(one)
    for i, (h, w) in enumerate(spec.get("extra_images", [])):
        rgb = image(h, w, 100 + i)
        io[f"extra_image{i}"] = torch.from_numpy(rgb.astype(np.float32))
        io[f"extra_pixel_values{i}"] = nhwc(processor(images=Image.fromarray(rgb), return_tensors="pt").pixel_values)
    pixel_values = processor(images=pils, return_tensors="pt").pixel_values
    with torch.no_grad():
        depth = model(pixel_values=pixel_values).predicted_depth
    io["pixel_values"] = nhwc(pixel_values)
    io["predicted_depth"] = depth.contiguous()
    save_file({k: v.float().contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))
    print(name, tuple(depth.shape), float(depth.abs().max()))


def check_hidden_states():
    # predicted_depth uses the encoder layer outputs hidden_states[1:][i] for i in backbone_out_indices[2:]:
    # confirm hidden_states[0] is the embedding output (not layer 0) in this transformers version.
    config = DPTConfig(**CASES["hybrid"]["config"])
    model = DPTForDepthEstimation(config).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model.dpt(x, output_hidden_states=True)
        emb = model.dpt.embeddings(x).last_hidden_states
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[0], emb)


def manifest():
    with open(os.path.join(REAL, "depth_estimator", "config.json")) as f:
        cfg = json.load(f)
    # Copies of the reconstructed sd2-depth configs, so the full-size test never depends on ../shared.
    d = os.path.join(ROOT, "dpt", "sd2-depth")
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(REAL, "depth_estimator", "config.json"), os.path.join(d, "config.json"))
    shutil.copy(os.path.join(REAL, "feature_extractor", "preprocessor_config.json"), os.path.join(d, "preprocessor_config.json"))
    config = DPTConfig(**cfg)
    with torch.device("meta"):
        model = DPTForDepthEstimation(config)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    os.makedirs(os.path.join(ROOT, "manifests"), exist_ok=True)
    with open(os.path.join(ROOT, "manifests", "stabilityai-stable-diffusion-2-depth-depth_estimator.json"), "w") as f:
        json.dump(shapes, f, indent=0, sort_keys=True)
    print("manifest", len(shapes), "tensors", sum(int(np.prod(s)) for s in shapes.values()), "parameters")


if __name__ == "__main__":
    check_hidden_states()
    for name, spec in CASES.items():
        make_case(name, spec)
    manifest()
