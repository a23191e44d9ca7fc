"""SDXL LoRA fixtures on the bundled tiny SDXL model: a kohya file (UNet modules in the original SGM names
kohya's sd-scripts trains SDXL with, `lora_te1_`/`lora_te2_` for the two text encoders, alphas, conv layers)
and a diffusers/PEFT file (`unet.`, `text_encoder.`, `text_encoder_2.`), with diffusers' pictures after
`load_lora_weights` + `fuse_lora` (PEFT) or after merging by kohya's rule (kohya; see main for why).

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_sdxl_lora_fixtures.py
Writes Tests/StableDiffusionTests/Fixtures/lora/sdxl_*. Before the pictures, every fused weight is checked
against W + scale * alpha/rank * up @ down computed here, so a layer diffusers' converter would drop or
misplace fails the script instead of making a wrong fixture.
"""
import json
import os
import sys

import numpy as np
import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import original_layout as ol  # noqa: E402

OUT = "Tests/StableDiffusionTests/Fixtures/lora"
ROOT = "Models/tiny-sdxl"
torch.set_num_threads(2)

# Attention (self, cross, 2 transformer layers per block, the mid block), feed-forward, projections, resnet
# convolutions and time projections, a shortcut, a downsampler, an upsampler and the add_embedding MLP.
UNET = ["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
        "down_blocks.2.attentions.1.transformer_blocks.1.attn1.to_out.0", "down_blocks.2.attentions.0.transformer_blocks.1.ff.net.0.proj",
        "down_blocks.1.attentions.1.proj_in", "mid_block.attentions.0.transformer_blocks.1.attn2.to_v",
        "up_blocks.0.attentions.2.transformer_blocks.0.ff.net.2", "up_blocks.1.attentions.0.proj_out",
        "down_blocks.0.resnets.1.conv1", "mid_block.resnets.0.conv2", "up_blocks.0.resnets.0.conv_shortcut",
        "down_blocks.2.resnets.0.time_emb_proj", "down_blocks.0.downsamplers.0.conv", "up_blocks.1.upsamplers.0.conv",
        "add_embedding.linear_1"]
TE = ["encoder.layers.0.self_attn.q_proj", "encoder.layers.1.mlp.fc1", "encoder.layers.2.self_attn.out_proj"]
TE2 = ["encoder.layers.0.self_attn.k_proj", "encoder.layers.1.mlp.fc2", "encoder.layers.1.self_attn.v_proj"]


def model(pipe, target):
    return {"unet": pipe.unet, "te1": pipe.text_encoder, "te2": pipe.text_encoder_2}[target]


def module(pipe, target, m):
    # transformers 5's CLIPTextModel has its layers at the top; CLIPTextModelWithProjection keeps text_model.
    root = model(pipe, target)
    try:
        return root.get_submodule(m)
    except AttributeError:
        return root.get_submodule("text_model." + m)


def pair(shape, rank, scale=0.25):
    out, inp, k = shape[0], shape[1], tuple(shape[2:])
    return torch.randn((rank, inp) + k) * scale, torch.randn((out, rank) + ((1, 1) if k else ())) * scale


def layers(pipe):
    for target, modules in (("unet", UNET), ("te1", TE), ("te2", TE2)):
        for i, m in enumerate(modules):
            yield target, m, i, module(pipe, target, m).weight.shape


def make(pipe, path, kohya, seed):
    torch.manual_seed(seed)
    sd, expected = {}, {}
    ranks, alphas = [2, 4, 3], [1.0, 4.0, 8.0]
    for target, m, i, shape in layers(pipe):
        rank = ranks[i % 3]
        down, up = pair(shape, rank)
        if kohya:
            if target == "unet":
                name = "lora_unet_" + ol.unet_module_to_original(m, pipe.unet.config).replace(".", "_")
            else:
                name = f"lora_{target}_text_model_" + m.replace(".", "_")
            sd[name + ".lora_down.weight"], sd[name + ".lora_up.weight"] = down, up
            alpha = alphas[i % 3]
            sd[name + ".alpha"] = torch.tensor(alpha)
        else:
            prefix = {"unet": "unet.", "te1": "text_encoder.text_model.", "te2": "text_encoder_2.text_model."}[target]
            sd[prefix + m + ".lora_A.weight"], sd[prefix + m + ".lora_B.weight"] = down, up
            alpha = rank  # no alpha and no stored config: diffusers takes alpha = rank
        expected[(target, m)] = (alpha / rank) * (up.flatten(1) @ down.flatten(1)).reshape(shape)
    save_file(sd, path)
    return expected


def check_fused(base_weights, pipe, expected, scale):
    worst = 0.0
    for (target, m), delta in expected.items():
        w = module(pipe, target, m).weight.detach()
        diff = (w - (base_weights[(target, m)] + scale * delta)).abs().max().item()
        worst = max(worst, diff)
        assert diff < 1e-4, f"{target} {m}: fused weight is off by {diff} (diffusers dropped or misplaced the layer?)"
    return worst


def main():
    pipe = StableDiffusionXLPipeline.from_pretrained(ROOT, torch_dtype=torch.float32, add_watermarker=False)
    base_weights = {(t, m): module(pipe, t, m).weight.detach().clone() for t, m, _, _ in layers(pipe)}
    kwargs = dict(prompt="a photograph of an astronaut riding a horse", negative_prompt="blurry", height=64, width=64,
                  num_inference_steps=4, guidance_scale=5.0)
    for name, kohya, scale, seed in (("sdxl_kohya", True, 0.8, 51), ("sdxl_peft", False, 1.0, 52)):
        path = os.path.join(OUT, name + ".safetensors")
        expected = make(pipe, path, kohya, seed)
        if kohya:
            # diffusers 0.42 (with transformers 5) loads kohya SDXL files wrongly: the attention layers'
            # alphas are ignored (its alpha_pattern keeps the old processor names) and lora_te2_ attention
            # layers are dropped as unexpected keys. The picture is made with the rule kohya's sd-scripts and
            # AUTOMATIC1111 apply, W + scale * alpha/rank * up @ down, merged here into diffusers' models.
            with torch.no_grad():
                for (t, m), delta in expected.items():
                    module(pipe, t, m).weight.copy_(base_weights[(t, m)] + scale * delta)
        else:
            pipe.load_lora_weights(path, adapter_name=name)
            pipe.fuse_lora(lora_scale=scale, adapter_names=[name])
        worst = check_fused(base_weights, pipe, expected, scale)
        images = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed)).images
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        images[0].save(os.path.join(d, "expected-0.png"))
        save_file({"image0": torch.from_numpy(np.asarray(images[0]).astype(np.float32))}, os.path.join(d, "tensors.safetensors"))
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(dict(kwargs, seed=seed, lora=name + ".safetensors", lora_scale=scale), f, indent=1)
        if kohya:
            with torch.no_grad():
                for (t, m), w in base_weights.items():
                    module(pipe, t, m).weight.copy_(w)
        else:
            pipe.unfuse_lora()
            pipe.unload_lora_weights()
        with torch.no_grad():
            for (t, m), w in base_weights.items():
                # unfuse subtracts in float32: equal up to rounding, then exactly the base again.
                assert torch.allclose(module(pipe, t, m).weight, w, atol=1e-5), f"{t} {m} not restored"
                module(pipe, t, m).weight.copy_(w)
        print(name, "fused within", worst)


def embedding_case():
    """An SDXL embedding file as AUTOMATIC1111 and civitai ship them: clip_l (first encoder) and clip_g
    (second) vectors, 2 each; loaded into diffusers the documented way, one load_textual_inversion per encoder."""
    pipe = StableDiffusionXLPipeline.from_pretrained(ROOT, torch_dtype=torch.float32, add_watermarker=False)
    g = torch.Generator().manual_seed(61)
    std_l = pipe.text_encoder.get_input_embeddings().weight.std().item()
    std_g = pipe.text_encoder_2.get_input_embeddings().weight.std().item()
    state = {"clip_l": torch.randn(2, pipe.text_encoder.config.hidden_size, generator=g) * std_l * 3,
             "clip_g": torch.randn(2, pipe.text_encoder_2.config.hidden_size, generator=g) * std_g * 3}
    path = os.path.join(OUT, "sdxl_embedding.safetensors")
    save_file(state, path)
    pipe.load_textual_inversion(state["clip_l"], token="sdxl_embedding", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token="sdxl_embedding", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    kwargs = dict(prompt="a photograph of sdxl_embedding riding a horse", negative_prompt="blurry", height=64, width=64,
                  num_inference_steps=4, guidance_scale=5.0)
    images = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(62)).images
    d = os.path.join(OUT, "sdxl_embedding")
    os.makedirs(d, exist_ok=True)
    images[0].save(os.path.join(d, "expected-0.png"))
    save_file({"image0": torch.from_numpy(np.asarray(images[0]).astype(np.float32))}, os.path.join(d, "tensors.safetensors"))
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(dict(kwargs, seed=62, embedding="sdxl_embedding.safetensors"), f, indent=1)
    print("sdxl_embedding")


if __name__ == "__main__":
    main()
    embedding_case()
