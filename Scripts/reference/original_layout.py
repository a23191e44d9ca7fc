"""Diffusers -> original CompVis/Stability ("LDM") checkpoint names, written independently of diffusers'
converter (which goes the other way), so the fixtures test diffusers' loader against a second opinion.

Every function maps a diffusers state dict (name -> tensor) to original names, driven by the diffusers
config, so block counts and channel multipliers are never assumed.
"""
import torch

RESNET_UNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def _rename_head(rest, table):
    for new, old in table:
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def unet_modules(cfg):
    """diffusers module prefix -> (original module prefix, kind)."""
    m = {"time_embedding.linear_1": ("time_embed.0", None), "time_embedding.linear_2": ("time_embed.2", None),
         "conv_in": ("input_blocks.0.0", None), "conv_norm_out": ("out.0", None), "conv_out": ("out.2", None),
         "class_embedding": ("label_emb", None),
         # SDXL's pooled-text + time-id MLP: SGM names it label_emb too.
         "add_embedding.linear_1": ("label_emb.0.0", None), "add_embedding.linear_2": ("label_emb.0.2", None)}
    n = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    lpb = [lpb] * n if isinstance(lpb, int) else list(lpb)
    k = 1
    for i in range(n):
        for j in range(lpb[i]):
            m[f"down_blocks.{i}.resnets.{j}"] = (f"input_blocks.{k}.0", "resnet")
            m[f"down_blocks.{i}.attentions.{j}"] = (f"input_blocks.{k}.1", None)
            k += 1
        if i < n - 1:
            m[f"down_blocks.{i}.downsamplers.0"] = (f"input_blocks.{k}.0", "down")
            k += 1
    m["mid_block.resnets.0"] = ("middle_block.0", "resnet")
    m["mid_block.attentions.0"] = ("middle_block.1", None)
    m["mid_block.resnets.1"] = ("middle_block.2", "resnet")
    k = 0
    rev = list(reversed(lpb))
    for i, t in enumerate(cfg.get("up_block_types", [])):
        attn = t == "CrossAttnUpBlock2D"
        for j in range(rev[i] + 1):
            m[f"up_blocks.{i}.resnets.{j}"] = (f"output_blocks.{k}.0", "resnet")
            m[f"up_blocks.{i}.attentions.{j}"] = (f"output_blocks.{k}.1", None)
            if j == rev[i] and i < n - 1:
                m[f"up_blocks.{i}.upsamplers.0"] = (f"output_blocks.{k}.{2 if attn else 1}", None)
            k += 1
    return m


def _apply(state, modules, prefix, renamer):
    out = {}
    for name, t in state.items():
        parts = name.split(".")
        for d in range(len(parts) - 1, 0, -1):
            key = ".".join(parts[:d])
            if key in modules:
                orig, kind = modules[key]
                rest = ".".join(parts[d:])
                for oname, ot in renamer(rest, kind, t):
                    out[prefix + orig + "." + oname] = ot
                break
        else:
            raise KeyError(f"no original module for {name}")
    return out


def unet_module_to_original(module, cfg):
    """One diffusers UNet module name (e.g. down_blocks.1.resnets.0.conv1) to its original (SGM/LDM) name
    (input_blocks.4.0.in_layers.2), as kohya's SDXL LoRA files name them."""
    modules = unet_modules(cfg)
    parts = module.split(".")
    for d in range(len(parts), 0, -1):
        key = ".".join(parts[:d])
        if key in modules:
            orig, kind = modules[key]
            rest = ".".join(parts[d:])
            if kind == "resnet":
                rest = _rename_head(rest, RESNET_UNET)
            elif kind == "down":
                rest = _rename_head(rest, [("conv", "op")])
            return orig + ("." + rest if rest else "")
    raise KeyError(module)


def _unet_renamer(rest, kind, t):
    """Parameter paths inside a UNet module: resnets and downsamplers are renamed, the rest kept."""
    if kind == "resnet":
        return [(_rename_head(rest, RESNET_UNET), t)]
    if kind == "down":
        return [(_rename_head(rest, [("conv", "op")]), t)]
    return [(rest, t)]


def unet_to_original(state, cfg):
    return _apply(state, unet_modules(cfg), "model.diffusion_model.", _unet_renamer)


def controlnet_to_original(state, cfg, prefix=""):
    """A diffusers ControlNetModel state dict in cldm.ControlNet's names (control_v11p_sd15_canny.pth): the UNet's
    down half, input_hint_block (convolutions at even indices, SiLU between), zero_convs.i.0, middle_block_out.0."""
    modules = unet_modules(cfg)
    widths = cfg.get("conditioning_embedding_out_channels", (16, 32, 96, 256))
    steps = len(widths) - 1
    modules["controlnet_cond_embedding.conv_in"] = ("input_hint_block.0", None)
    for i in range(2 * steps):
        modules[f"controlnet_cond_embedding.blocks.{i}"] = (f"input_hint_block.{2 * (i + 1)}", None)
    modules["controlnet_cond_embedding.conv_out"] = (f"input_hint_block.{2 * (2 * steps + 1)}", None)
    n = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    skips = 1 + (lpb * n if isinstance(lpb, int) else sum(lpb)) + n - 1
    for i in range(skips):
        modules[f"controlnet_down_blocks.{i}"] = (f"zero_convs.{i}.0", None)
    modules["controlnet_mid_block"] = ("middle_block_out.0", None)
    return _apply(state, modules, prefix, _unet_renamer)


def vae_to_original(state, cfg):
    n = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    m = {}
    for side in ("encoder", "decoder"):
        m[f"{side}.conv_in"] = (f"{side}.conv_in", None)
        m[f"{side}.conv_out"] = (f"{side}.conv_out", None)
        m[f"{side}.conv_norm_out"] = (f"{side}.norm_out", None)
        m[f"{side}.mid_block.resnets.0"] = (f"{side}.mid.block_1", "resnet")
        m[f"{side}.mid_block.resnets.1"] = (f"{side}.mid.block_2", "resnet")
        m[f"{side}.mid_block.attentions.0"] = (f"{side}.mid.attn_1", "attn")
    m["quant_conv"] = ("quant_conv", None)
    m["post_quant_conv"] = ("post_quant_conv", None)
    for i in range(n):
        for j in range(lpb):
            m[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", "resnet")
        for j in range(lpb + 1):
            m[f"decoder.up_blocks.{i}.resnets.{j}"] = (f"decoder.up.{n - 1 - i}.block.{j}", "resnet")
        m[f"encoder.down_blocks.{i}.downsamplers.0"] = (f"encoder.down.{i}.downsample", None)
        m[f"decoder.up_blocks.{i}.upsamplers.0"] = (f"decoder.up.{n - 1 - i}.upsample", None)

    def ren(rest, kind, t):
        if kind == "resnet":
            return [(_rename_head(rest, [("conv_shortcut", "nin_shortcut")]), t)]
        if kind == "attn":
            r = _rename_head(rest, [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")])
            # The original AttnBlock uses 1x1 convolutions.
            return [(r, t[:, :, None, None] if t.ndim == 2 else t)]
        return [(rest, t)]
    return _apply(state, m, "first_stage_model.", ren)


def clip_to_original(state, prefix="cond_stage_model.transformer."):
    """SD 1.x: transformers' CLIPTextModel under cond_stage_model.transformer. (with the text_model. level
    that older transformers wrote), plus the position_ids buffer real files carry. SDXL keeps the same
    model under conditioner.embedders.0.transformer."""
    out = {}
    for name, t in state.items():
        name = name if name.startswith("text_model.") else "text_model." + name
        out[prefix + name] = t
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64, device=next(iter(state.values())).device)[None]
    return out


def openclip_to_original(state, extra_layers=0, dtype=torch.float16, prefix="cond_stage_model.model."):
    """SD 2.x: OpenCLIP's text tower (fused in_proj q/k/v, ln_1/ln_2, c_fc/c_proj, text_projection,
    logit_scale). `extra_layers` appends blocks the diffusers config leaves out (OpenCLIP ViT-H has 24,
    SD 2 uses 23). SDXL's bigG (conditioner.embedders.1.model., the refiner's 0.model.) keeps all its
    layers, and its projection is the model's own: OpenCLIP applies it as x @ P, so P is the Linear
    weight transposed."""
    s = {(k[len("text_model."):] if k.startswith("text_model.") else k): v for k, v in state.items()}
    p = prefix
    out = {p + "token_embedding.weight": s["embeddings.token_embedding.weight"],
           p + "positional_embedding": s["embeddings.position_embedding.weight"],
           p + "ln_final.weight": s["final_layer_norm.weight"], p + "ln_final.bias": s["final_layer_norm.bias"]}
    hidden = s["final_layer_norm.weight"].shape[0]
    layers = sorted({int(k.split(".")[2]) for k in s if k.startswith("encoder.layers.")})
    for i in layers:
        L, R = f"encoder.layers.{i}.", f"{p}transformer.resblocks.{i}."
        out[R + "attn.in_proj_weight"] = torch.cat([s[L + f"self_attn.{x}_proj.weight"] for x in "qkv"], 0)
        out[R + "attn.in_proj_bias"] = torch.cat([s[L + f"self_attn.{x}_proj.bias"] for x in "qkv"], 0)
        for new, old in [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]:
            for wb in ("weight", "bias"):
                out[R + old + "." + wb] = s[L + new + "." + wb]
    like = {k[len(f"{p}transformer.resblocks.{layers[-1]}."):]: v for k, v in out.items() if k.startswith(f"{p}transformer.resblocks.{layers[-1]}.")}
    for e in range(extra_layers):
        g = torch.Generator().manual_seed(100 + e)
        for k, v in like.items():
            out[f"{p}transformer.resblocks.{layers[-1] + 1 + e}.{k}"] = (torch.randn(v.shape, generator=g) * 0.02).to(v.dtype)
    if "text_projection.weight" in s:
        out[p + "text_projection"] = s["text_projection.weight"].t().contiguous()
    else:
        out[p + "text_projection"] = (torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(7)) * 0.02).to(dtype)
    out[p + "logit_scale"] = torch.tensor(4.6052, dtype=dtype, device=s["final_layer_norm.weight"].device)
    return out


def schedule_buffers(dtype=torch.float32):
    """The DDPM buffers LatentDiffusion registers and every original checkpoint carries (ignored on load)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    return {"betas": betas.to(dtype), "alphas_cumprod": ac.to(dtype), "alphas_cumprod_prev": torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]]).to(dtype),
            "sqrt_alphas_cumprod": ac.sqrt().to(dtype), "log_one_minus_alphas_cumprod": (1 - ac).log().to(dtype)}


def ema_copy(unet_original):
    """Lightning's LitEma naming: 'model_ema.' + the name after 'model.' with the dots removed."""
    out = {"model_ema." + k[len("model."):].replace(".", ""): v.clone() for k, v in unet_original.items()}
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    return out
