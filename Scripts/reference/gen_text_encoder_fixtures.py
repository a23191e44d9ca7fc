"""Generates the CLIP text-encoder fixtures: small random CLIPTextModels of both SD flavours with
transformers' outputs, and names-and-shapes manifests of the real SD 1.5 / SD 2.1 text encoders.

Run from the repository root with the pinned environment (transformers 5.24, torch 2.15):
    ~/.sd-ref-venv/bin/python Scripts/reference/gen_text_encoder_fixtures.py [REFERENCE_CONFIGS_DIR]
REFERENCE_CONFIGS_DIR defaults to /work/shared/reference-configs.

Writes under Tests/StableDiffusionTests/Fixtures/text_encoder/:
  tiny-quick-gelu/, tiny-gelu/   config.json, model.safetensors (fp16 weights, named as SD checkpoints
                                 name them: "text_model." prefix plus the legacy position_ids buffer),
                                 expected.safetensors (input_ids as I64; fp32 outputs)
  <repo>/config.json, <repo>/manifest.json
                                 the real config and a JSON list of [name, shape] from transformers'
                                 CLIPTextModel(config).state_dict() (transformers 5 drops the "text_model."
                                 prefix that SD checkpoints, saved by transformers 4, carry; its loader
                                 removes that prefix, so the Swift loader accepts both)
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

ROOT = os.path.join("Tests", "StableDiffusionTests", "Fixtures", "text_encoder")
REFS = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference-configs"
torch.set_num_threads(1)

TINY = {
    # SD 1.x-like: OpenAI CLIP, quick_gelu, eos_token_id 2 (pooled = argmax of ids), pad with eos.
    "tiny-quick-gelu": dict(
        vocab_size=1000, hidden_size=32, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32,
        bos_token_id=0, eos_token_id=2, pad_token_id=1, seed=11, pad_with="eos", clip_skips=[1, 2, 3],
    ),
    # SD 2.x-like: OpenCLIP-H, gelu, pad with "!" (id 0). eos_token_id is the real eot id here so the
    # other pooled-output branch (first eos position) is covered too.
    "tiny-gelu": dict(
        vocab_size=1000, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=32,
        bos_token_id=998, eos_token_id=999, pad_token_id=1, seed=22, pad_with="zero", clip_skips=[1, 2],
    ),
}
BOS, EOT = 998, 999  # stand-ins for <|startoftext|> 49406 and <|endoftext|> 49407 in a 1000-token vocab


def randomize(model, gen):
    # Larger than transformers' init so attention is peaked (masking matters) and every term is visible.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=gen))
            elif "embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5 * 1.5)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            # Round to fp16 so the committed fp16 weights are exactly what produced the outputs.
            p.copy_(p.half().float())


def prompt_ids(gen, length, pad_with, cfg):
    ids = [BOS] + torch.randint(3, 990, (length,), generator=gen).tolist() + [EOT]
    pad = EOT if pad_with == "eos" else 0
    return ids + [pad] * (cfg["max_position_embeddings"] - len(ids))


def make_tiny(name, spec):
    spec = dict(spec)
    seed, pad_with, clip_skips = spec.pop("seed"), spec.pop("pad_with"), spec.pop("clip_skips")
    gen = torch.Generator().manual_seed(seed)
    config = CLIPTextConfig(**spec)
    config.architectures = ["CLIPTextModel"]
    model = CLIPTextModel(config).eval()
    randomize(model, gen)
    out_dir = os.path.join(ROOT, name)
    os.makedirs(out_dir, exist_ok=True)

    # Weights as an SD checkpoint names them (transformers 4 layout) plus the legacy buffer.
    weights = {f"text_model.{k}": v.half().contiguous() for k, v in model.state_dict().items()}
    weights["text_model.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
    save_file(weights, os.path.join(out_dir, "model.safetensors"))
    config.to_json_file(os.path.join(out_dir, "config.json"))

    # transformers itself must load that file strictly (prefix removed, position_ids ignored).
    loaded, info = CLIPTextModel.from_pretrained(out_dir, output_loading_info=True, dtype=torch.float32)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    model = loaded.eval()

    # A full SD-style batch (77 tokens, padded) of two prompts, and an unpadded short sequence.
    ids = torch.tensor([prompt_ids(gen, 12, pad_with, spec), prompt_ids(gen, 40, pad_with, spec)])
    short = torch.tensor([[BOS] + torch.randint(3, 990, (7,), generator=gen).tolist() + [EOT]])
    expected = {"input_ids": ids, "short.input_ids": short}
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        expected["last_hidden_state"] = out.last_hidden_state
        expected["pooler_output"] = out.pooler_output
        for i, h in enumerate(out.hidden_states):
            expected[f"hidden_states.{i}"] = h
        # diffusers' encode_prompt with clip_skip: hidden_states[-(clip_skip + 1)] then the final layer norm.
        for skip in clip_skips:
            expected[f"clip_skip.{skip}"] = model.final_layer_norm(out.hidden_states[-(skip + 1)])
        s = model(short, output_hidden_states=True)
        expected["short.last_hidden_state"] = s.last_hidden_state
        expected["short.pooler_output"] = s.pooler_output
    expected = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in expected.items()}
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))
    print(name, sum(p.numel() for p in model.parameters()), "parameters")


def make_manifest(repo):
    src = os.path.join(REFS, repo, "text_encoder", "config.json")
    out_dir = os.path.join(ROOT, repo)
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(src, os.path.join(out_dir, "config.json"))
    config = CLIPTextConfig.from_json_file(src)
    with torch.device("meta"):  # names and shapes only; no 340M-parameter allocation
        model = CLIPTextModel(config)
    manifest = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(e) for e in manifest) + "\n]\n")
    print(repo, len(manifest), "tensors")


if __name__ == "__main__":
    for name, spec in TINY.items():
        make_tiny(name, spec)
    for repo in ["runwayml-stable-diffusion-v1-5", "stabilityai-stable-diffusion-2-1"]:
        make_manifest(repo)
