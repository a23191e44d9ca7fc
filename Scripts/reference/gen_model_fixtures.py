"""UNet2DConditionModel and AutoencoderKL fixtures: small random models (fp16 weights) covering every
config option the engine implements, with diffusers' fp32 outputs; and names-and-shapes manifests of the
real configs in ../shared/reference-configs.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_model_fixtures.py
Writes Tests/StableDiffusionTests/Fixtures/models/<case>/{config.json,weights.safetensors,io.safetensors}
and Tests/StableDiffusionTests/Fixtures/manifests/<model>-<component>.json.
"""
import json
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

ROOT = "Tests/StableDiffusionTests/Fixtures"
torch.manual_seed(0)
torch.set_num_threads(2)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def randomise(model):
    # Default inits leave norms at 1/0 and some layers tiny; perturb everything so a mis-mapped weight shows.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    # Round to fp16 so the stored weights and the reference computation agree exactly.
    return model.half().float().eval()


def save_case(name, model, io, rename=None):
    d = os.path.join(ROOT, "models", name)
    os.makedirs(d, exist_ok=True)
    cfg = dict(model.config)
    cfg["_class_name"] = type(model).__name__
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1, default=list)
    sd = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    if rename:
        sd = {rename(k): v for k, v in sd.items()}
    save_file(sd, os.path.join(d, "weights.safetensors"))
    save_file({k: v.float().contiguous() for k, v in io.items()}, os.path.join(d, "io.safetensors"))


UNET_CASES = {
    "unet_sd1": dict(
        config=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                    attention_head_dim=4, cross_attention_dim=24, norm_num_groups=8),
        batch=2, size=(8, 12), tokens=7, timestep=981, labels=None),
    "unet_sd2": dict(
        config=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32), layers_per_block=1,
                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                    attention_head_dim=[2, 4, 4], use_linear_projection=True, upcast_attention=True, cross_attention_dim=16,
                    norm_num_groups=4, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0,
                    resnet_time_scale_shift="scale_shift", transformer_layers_per_block=2),
        batch=2, size=(8, 8), tokens=5, timestep=523.75, labels=None),
    "unet_inpaint9": dict(
        config=dict(sample_size=8, in_channels=9, out_channels=4, block_out_channels=(16, 24), layers_per_block=2,
                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                    attention_head_dim=4, cross_attention_dim=16, norm_num_groups=4, mid_block_scale_factor=1.5),
        batch=1, size=(9, 7), tokens=4, timestep=1, labels=None),
    "unet_upscaler": dict(
        config=dict(sample_size=8, in_channels=7, out_channels=4, block_out_channels=(16, 16, 32), layers_per_block=1,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    attention_head_dim=4, cross_attention_dim=16, norm_num_groups=4, num_class_embeds=50,
                    only_cross_attention=[True, True, False], use_linear_projection=True),
        batch=2, size=(8, 12), tokens=6, timestep=250, labels=[20, 20]),
    "unet_classts_nomid": dict(
        config=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                    attention_head_dim=2, cross_attention_dim=8, norm_num_groups=4, class_embed_type="timestep",
                    mid_block_type=None, center_input_sample=True, only_cross_attention=True),
        batch=2, size=(4, 4), tokens=3, timestep=10, labels=[3, 700]),
}

for name, case in UNET_CASES.items():
    model = randomise(UNet2DConditionModel(**case["config"]))
    b, (h, w), c = case["batch"], case["size"], case["config"]["in_channels"]
    sample = torch.randn(b, c, h, w)
    ctx = torch.randn(b, case["tokens"], case["config"]["cross_attention_dim"])
    labels = torch.tensor(case["labels"]) if case["labels"] is not None else None
    with torch.no_grad():
        out = model(sample, torch.tensor(case["timestep"]), encoder_hidden_states=ctx, class_labels=labels).sample
    io = {"sample": nhwc(sample), "encoder_hidden_states": ctx, "output": nhwc(out),
          "timestep": torch.tensor([float(case["timestep"])])}
    if labels is not None:
        io["class_labels"] = labels.float()
    save_case(name, model, io)
    print(name, sum(p.numel() for p in model.parameters()), "params")

VAE_CASES = {
    "vae_sd": dict(config=dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                               down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                               scaling_factor=0.18215), size=(16, 24), batch=2, legacy=False),
    "vae_x4": dict(config=dict(block_out_channels=(16, 32, 32), layers_per_block=2, norm_num_groups=8, latent_channels=4,
                               down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                               scaling_factor=0.08333), size=(16, 16), batch=1, legacy=False),
    "vae_legacy_names": dict(config=dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
                                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2),
                             size=(8, 8), batch=1, legacy=True),
}


def legacy_name(k):
    for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
        k = k.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
    return k


for name, case in VAE_CASES.items():
    model = randomise(AutoencoderKL(**case["config"]))
    b, (h, w) = case["batch"], case["size"]
    image = torch.rand(b, 3, h, w) * 2 - 1
    with torch.no_grad():
        dist = model.encode(image).latent_dist
        noise = torch.randn(dist.mean.shape)
        sample = dist.mean + dist.std * noise
        latents = torch.randn(dist.mean.shape)
        decoded = model.decode(latents).sample
    io = {"image": nhwc(image), "mean": nhwc(dist.mean), "logvar": nhwc(dist.logvar), "noise": nhwc(noise),
          "sample": nhwc(sample), "latents": nhwc(latents), "decoded": nhwc(decoded)}
    save_case(name, model, io, rename=legacy_name if case["legacy"] else None)
    print(name, sum(p.numel() for p in model.parameters()), "params")

# Names-and-shapes manifests of the real configs (built on the meta device: no memory, no weights).
REF = "../shared/reference-configs"
os.makedirs(os.path.join(ROOT, "manifests"), exist_ok=True)
for repo in sorted(os.listdir(REF)):
    for component, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        path = os.path.join(REF, repo, component, "config.json")
        if not os.path.exists(path):
            continue
        with torch.device("meta"):
            model = cls.from_config(cls.load_config(os.path.join(REF, repo, component)))
        manifest = {k: list(v.shape) for k, v in model.state_dict().items()}
        with open(os.path.join(ROOT, "manifests", f"{repo}-{component}.json"), "w") as f:
            json.dump(manifest, f, indent=0, sort_keys=True)
        print(repo, component, len(manifest), "tensors,", sum(torch.Size(s).numel() for s in manifest.values()), "params")
