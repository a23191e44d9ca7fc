"""Seed corpora for the fuzz targets (Fuzz/corpus/<target>/): small valid and near-valid inputs, from the
checked-in fixtures and tiny models, plus a few files written here with numpy/torch/safetensors.
Run from the repository root: ~/.sd-ref-venv/bin/python Scripts/reference/gen_fuzz_corpus.py"""
import base64, glob, hashlib, io, json, os, shutil, struct
import numpy as np
import torch
from safetensors.numpy import save as st_save
from safetensors import safe_open

OUT = "Fuzz/corpus"
IO = "Tests/DiffusionTensorTests/Fixtures/io"
FX = "Tests/StableDiffusionTests/Fixtures"
MAX = 64 * 1024  # seeds stay small: libFuzzer's speed depends on input size


def put(target, name, data):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    assert len(data) <= MAX, (target, name, len(data))
    with open(f"{OUT}/{target}/{name}", "wb") as f:
        f.write(data)


def copy(target, pattern, limit=MAX):
    for path in sorted(glob.glob(pattern, recursive=True)):
        data = open(path, "rb").read()
        if len(data) <= limit:
            put(target, os.path.relpath(path).replace("/", "_"), data)


def torch_bytes(obj, legacy=False):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def subset_safetensors(path, keep, half=False):
    with safe_open(path, "np") as f:
        return {k: f.get_tensor(k).astype(np.float16) if half else f.get_tensor(k) for k in f.keys() if keep(k)}


for d in glob.glob(f"{OUT}/*"):
    shutil.rmtree(d)

# Tensor files.
copy("safetensors", f"{IO}/*.safetensors")
copy("safetensors", f"{FX}/lora/a1111.safetensors")
copy("safetensors", f"{FX}/lora/learned_embeds.safetensors")
copy("torch", f"{IO}/*.pt")
copy("torch", f"{IO}/*.ckpt")
copy("torch", f"{FX}/lora/*.pt")
copy("torch", f"{FX}/lora/*.bin")
put("torch", "legacy_dict.pt", torch_bytes({"a": torch.arange(6, dtype=torch.float16).reshape(2, 3)}, legacy=True))
put("torch", "views.pt", torch_bytes({"x": torch.arange(12.0).reshape(3, 4).t(), "y": torch.ones(2, dtype=torch.bfloat16)}))

# Configs: every config.json, scheduler config and model_index.json of the tiny models and the real configs.
for pattern in ["Models/**/*config*.json", "Models/*/model_index.json",
                f"{FX}/reference-configs/**/*.json", "Sources/StableDiffusion/Resources/SingleFileConfigs/**/*.json"]:
    copy("config", pattern, limit=8192)

# Tokenizers: vocab.json NUL merges.txt [NUL tokenizer_config.json], or tokenizer.json alone.
sd1 = "Models/tiny-sd1/tokenizer"
vocab, merges = open(f"{sd1}/vocab.json", "rb").read(), open(f"{sd1}/merges.txt", "rb").read()
put("tokenizer", "sd1_vocab_merges", vocab + b"\0" + merges)
put("tokenizer", "sd1_vocab_merges_config", vocab + b"\0" + merges + b"\0" + open(f"{sd1}/tokenizer_config.json", "rb").read())
put("tokenizer", "sd2_tokenizer_json", open("Models/tiny-sd2/tokenizer/tokenizer.json", "rb").read())
small_vocab = {t: i for i, t in enumerate(["!", "a", "b", "c", "a</w>", "b</w>", "ab</w>", "<|startoftext|>", "<|endoftext|>"])}
put("tokenizer", "small", json.dumps(small_vocab).encode() + b"\0#version: 0.2\na b</w>\n")

# Pictures.
copy("image", f"{FX}/imaging/*.png", limit=4096)
copy("image", f"{FX}/imaging/*.jpg", limit=4096)

# Depth maps in every format.
copy("depthmap", f"{FX}/imaging/gray16.png")
copy("depthmap", f"{FX}/imaging/gray8.png")
copy("depthmap", f"{IO}/depth.pt")
depth = (np.arange(48, dtype=np.float32).reshape(1, 6, 8) / 47)
for dtype in ["<f4", "<f2", "<u2", "|u1", "<i8"]:
    buf = io.BytesIO()
    np.save(buf, (depth * 100).astype(dtype))
    put("depthmap", f"depth_{dtype.strip('<|')}.npy", buf.getvalue())
put("depthmap", "depth.safetensors", st_save({"depth": depth[0]}))
put("depthmap", "depth_dict.pt", torch_bytes({"depth_map": torch.from_numpy(depth)}))

# Adapters: the small LoRA and embedding fixtures, and a kohya subset of a real-layout LoRA.
for name in ["a1111.safetensors", "a1111.pt", "learned_embeds.bin", "learned_embeds.safetensors",
             "sd1_peft.safetensors", "sd1_peft_config.safetensors"]:
    copy("adapters", f"{FX}/lora/{name}")
# Pickle allow-list cases: an early ParameterDict embedding and one carrying a payload (gen_pickle_fixtures.py).
copy("adapters", f"{FX}/pickle/parameterdict_embedding.pt")
copy("adapters", f"{FX}/pickle/payload_os_system.pt")
kohya = subset_safetensors(f"{FX}/lora/sd1_kohya.safetensors", lambda k: "down_blocks_0" in k or "lora_te_" in k)
put("adapters", "sd1_kohya_subset.safetensors", st_save(kohya))

# Single files: a few tensors of each tiny checkpoint (enough for detection's key checks and the converter).
ck = f"{FX}/single_file/checkpoints"
def singlefile_keep(k):
    return any(s in k for s in ["time_embed.0", "input_blocks.0.0.", "input_blocks.1.1.proj_in", "transformer_blocks.0.attn2.to_k",
                                "first_stage_model.encoder.mid.attn_1.q", "first_stage_model.post_quant_conv", "position_embedding",
                                "resblocks.0.attn.in_proj", "encoder.layers.0.self_attn.q_proj", "final_layer_norm"])
for name in ["tiny-sd1.safetensors", "tiny-sd2.safetensors", "tiny-sd-inpainting.safetensors"]:
    put("singlefile", name, st_save(subset_safetensors(f"{ck}/{name}", singlefile_keep, half=True)))
copy("singlefile", f"{FX}/pickle/sd-v1-4-layout.ckpt")  # Lightning ModelCheckpoint key, numpy scalars
sd1_subset = subset_safetensors(f"{ck}/tiny-sd1.safetensors", singlefile_keep, half=True)
put("singlefile", "tiny-sd1-subset.ckpt", torch_bytes({"global_step": 470000, "state_dict": {k: torch.from_numpy(v.copy()) for k, v in sd1_subset.items()}}))

# Server bodies: byte 0 = endpoint (0 txt2img, 1 img2img, 2 OpenAI generations, 3 OpenAI edits) + 4 * model kind
# (0 standard, 1 inpainting, 2 depth, 3 upscaler).
png = open(f"{FX}/imaging/gray_alpha8.png", "rb").read() if os.path.getsize(f"{FX}/imaging/gray_alpha8.png") < 4096 else None
small_png = open(f"{FX}/imaging/mask.png", "rb").read()
rgb = open(f"{FX}/imaging/baseline.jpg", "rb").read()
gray16 = open(f"{FX}/imaging/gray16.png", "rb").read()
b64 = lambda b: base64.b64encode(b).decode()
def server(name, endpoint, kind, body):
    put("server", name, bytes([endpoint + 4 * kind]) + body)
server("txt2img", 0, 0, json.dumps({"prompt": "a cat", "negative_prompt": "dog", "steps": 2, "cfg_scale": 7, "width": 64, "height": 64,
                                    "seed": 42, "sampler_name": "Euler a", "batch_size": 2, "n_iter": 1, "override_settings": {}}).encode())
server("txt2img_bad", 0, 0, b'{"steps": "x", "width": 7, "eta": 2, "enable_hr": true, "seed": -5}')
for kind in range(4):
    server(f"img2img_k{kind}", 1, kind, json.dumps({"prompt": "p", "init_images": [b64(rgb)], "denoising_strength": 0.5, "steps": 2,
                                                   "width": 64, "height": 64}).encode())
server("img2img_mask", 1, 0, json.dumps({"init_images": ["data:image/jpeg;base64," + b64(rgb)], "mask": b64(small_png), "inpainting_mask_invert": 1,
                                         "inpaint_full_res_padding": 32}).encode())
server("img2img_depth", 1, 2, json.dumps({"init_images": [b64(rgb)], "depth_map": b64(gray16)}).encode())
server("openai_generations", 2, 0, json.dumps({"prompt": "a cat", "n": 2, "size": "64x64", "response_format": "url", "steps": 2,
                                               "guidance_scale": 5.5, "seed": 1, "sampler_name": "DDIM"}).encode())
boundary = b"XyZzy"
def form(fields, files):
    out = b""
    for k, v in fields.items():
        out += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + k.encode() + b'"\r\n\r\n' + v.encode() + b"\r\n"
    for k, (fn, data, ctype) in files.items():
        out += (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + k.encode() + b'"; filename="' + fn.encode()
                + b'"\r\nContent-Type: ' + ctype.encode() + b"\r\n\r\n" + data + b"\r\n")
    return out + b"--" + boundary + b"--\r\n"
ctype = b"multipart/form-data; boundary=" + boundary + b"\n"
server("openai_edits", 3, 0, ctype + form({"prompt": "a cat", "n": "1", "size": "64x64", "strength": "0.8"},
                                          {"image": ("a.jpg", rgb, "image/jpeg"), "mask": ("m.png", small_png, "image/png")}))
if png:
    server("openai_edits_alpha", 3, 1, ctype + form({"prompt": "x"}, {"image[]": ("a.png", png, "image/png")}))
print({t: len(os.listdir(f"{OUT}/{t}")) for t in sorted(os.listdir(OUT))})
