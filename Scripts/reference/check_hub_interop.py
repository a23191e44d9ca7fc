"""Cache interoperability between `sd download` and huggingface_hub / diffusers, against the local fake Hub
(Scripts/testhub/fake_hub.py) with HF_ENDPOINT. Not run by CI (needs the pinned venv).

  (a) `sd download` fills a cache; huggingface_hub (snapshot_download / hf_hub_download with local_files_only)
      and diffusers (StableDiffusionPipeline.from_pretrained(repo, local_files_only=True)) use it offline;
      the same with --variant fp16.
  (b) diffusers downloads into a fresh cache; `sd download` with HF_HUB_OFFLINE=1 finds it and `sd txt2img` loads it.
  (c) both caches have the same tree: files, symlink targets, refs, trees/<commit>.json bytes (plain and fp16).
  (d) on awkward layouts (a .bin-only component, sharded and legacy-named variants, a safety checker, root
      checkpoints) `sd download` picks the same files as diffusers' `download(variant=V, safety_checker=None)`.

    swift build && ~/.sd-ref-venv/bin/python Scripts/reference/check_hub_interop.py [--sd .build/debug/sd]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMIT = "a" * 40
REPO = "tiny/sd1"


def make_repo(base):
    """Models/tiny-sd1 plus fp16 copies and files a pipeline download skips."""
    folder = os.path.join(base, "repo")
    shutil.copytree(os.path.join(ROOT, "Models", "tiny-sd1"), folder)
    for d, stem in [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")]:
        shutil.copy(os.path.join(folder, d, f"{stem}.safetensors"), os.path.join(folder, d, f"{stem}.fp16.safetensors"))
    for path, text in [("v1-5-pruned.ckpt", "x"), ("unet/diffusion_pytorch_model.bin", "x"), ("README.md", "# tiny")]:
        with open(os.path.join(folder, path), "w") as f:
            f.write(text)
    repos = {REPO: {"commits": {COMMIT: folder}, "refs": {"main": COMMIT}}}
    for name, files in LAYOUTS.items():
        root = os.path.join(base, name.replace("/", "_"))
        index = json.load(open(os.path.join(ROOT, "Models", "tiny-sd1", "model_index.json")))
        if "safety_checker/config.json" in files:
            index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
            index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        for path in files + ["model_index.json"]:
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w") as f:
                f.write(json.dumps(index) if path == "model_index.json" else "{}" if path.endswith(".json") else path)
        repos[name] = {"commits": {COMMIT: root}, "refs": {"main": COMMIT}}
    spec = os.path.join(base, "spec.json")
    with open(spec, "w") as f:
        json.dump({"repos": repos}, f)
    return spec


# File layouts (dummy bytes) on which sd's choice of files must equal diffusers' download(variant=V, safety_checker=None).
_BASE = ["scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
         "text_encoder/config.json", "unet/config.json", "vae/config.json"]
LAYOUTS = {
    # One component without safetensors: diffusers then takes .bin everywhere.
    "lay/bin-text": _BASE + ["text_encoder/pytorch_model.bin", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors",
                             "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.safetensors"],
    # Sharded fp16 unet (current naming), fp16 text encoder, vae without fp16 (mixed), flax and onnx files.
    "lay/sharded-fp16": _BASE + ["unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                                 "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors", "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
                                 "unet/diffusion_flax_model.msgpack", "unet/model.onnx", "text_encoder/model.safetensors",
                                 "text_encoder/model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors"],
    # Legacy sharded-variant naming and plain shards with their index.
    "lay/legacy": _BASE + ["unet/diffusion_pytorch_model-00001-of-00002.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
                           "unet/diffusion_pytorch_model.safetensors.index.json", "unet/diffusion_pytorch_model-00001-of-00002.fp16.safetensors",
                           "unet/diffusion_pytorch_model-00002-of-00002.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors.fp16.index.json",
                           "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors",
                           "vae/diffusion_pytorch_model.fp16.safetensors"],
    # A safety checker (skipped by sd, passed as None to diffusers), root checkpoints, README.
    "lay/safety": _BASE + ["unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                           "safety_checker/config.json", "safety_checker/model.safetensors", "safety_checker/pytorch_model.bin",
                           "feature_extractor/preprocessor_config.json", "v1-5-pruned-emaonly.safetensors", "v1-5-pruned.ckpt", "README.md"],
}


def python(code, env):
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return r.returncode, r.stdout.strip(), r.stderr.strip()[-2000:]


def tree(cache):
    """Every path with, for links, their target; refs and tree files with their content."""
    out = []
    for dirpath, dirs, files in os.walk(cache):
        for name in sorted(dirs + files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, cache)
            if os.path.islink(full):
                out.append(f"{rel} -> {os.readlink(full)}")
            elif os.path.isfile(full) and ("/refs/" in full or "/trees/" in full):
                with open(full, "rb") as f:
                    out.append(f"{rel} = {hash(f.read())}")
            else:
                out.append(rel)
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sd", default=os.path.join(ROOT, ".build", "debug", "sd"))
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="hub-interop-")
    hub = subprocess.Popen([sys.executable, os.path.join(ROOT, "Scripts", "testhub", "fake_hub.py"), make_repo(base)],
                           stdout=subprocess.PIPE, text=True)
    ok = True

    def check(name, cond, detail=""):
        nonlocal ok
        ok &= bool(cond)
        print(("PASS " if cond else "FAIL ") + name + ("" if cond else f"\n    {detail}"))

    try:
        port = hub.stdout.readline().strip()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        base_env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
        sd_cache, py_cache = os.path.join(base, "sd-cache"), os.path.join(base, "py-cache")
        sd_env = dict(base_env, HF_HUB_CACHE=sd_cache)
        py_env = dict(base_env, HF_HUB_CACHE=py_cache)

        # (a) sd fills, Python reads offline.
        r = subprocess.run([args.sd, "download", REPO], env=sd_env, capture_output=True, text=True)
        check("sd download", r.returncode == 0, r.stderr)
        snapshot = r.stdout.strip()
        files = sorted(os.path.relpath(os.path.join(d, f), snapshot) for d, _, fs in os.walk(snapshot) for f in fs)
        offline = dict(sd_env, HF_HUB_OFFLINE="1")
        code, out, err = python(f"""
from huggingface_hub import snapshot_download, hf_hub_download
p = snapshot_download({REPO!r}, local_files_only=True, allow_patterns={files!r})
assert all(hf_hub_download({REPO!r}, f, local_files_only=True).startswith(p) for f in {files!r})
print(p)""", offline)
        check("huggingface_hub snapshot_download/hf_hub_download(local_files_only) on sd's cache", code == 0 and out == snapshot, err or out)
        gen = """
import torch
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained({repo!r}, local_files_only=True, torch_dtype=torch.float32{extra})
img = pipe("a red cube", num_inference_steps=2, height=64, width=64, generator=torch.Generator().manual_seed(0), output_type="np").images
print(img.shape)"""
        code, out, err = python(gen.format(repo=REPO, extra=""), offline)
        check("diffusers from_pretrained(local_files_only) on sd's cache, 2-step txt2img", code == 0, err)
        r = subprocess.run([args.sd, "download", REPO, "--variant", "fp16"], env=sd_env, capture_output=True, text=True)
        check("sd download --variant fp16", r.returncode == 0, r.stderr)
        code, out, err = python(gen.format(repo=REPO, extra=", variant='fp16'"), offline)
        check("diffusers from_pretrained(variant='fp16', local_files_only) on sd's cache", code == 0, err)

        # (b) diffusers fills, sd reads offline.
        code, out, err = python(f"""
from diffusers import StableDiffusionPipeline
StableDiffusionPipeline.from_pretrained({REPO!r})""", py_env)
        check("diffusers from_pretrained download", code == 0, err)
        r = subprocess.run([args.sd, "download", REPO], env=dict(py_env, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
        check("sd download with HF_HUB_OFFLINE=1 on diffusers' cache", r.returncode == 0 and r.stdout.strip().startswith(py_cache), r.stderr)
        png = os.path.join(base, "out.png")
        t = subprocess.run([args.sd, "txt2img", "--model", r.stdout.strip(), "--prompt", "a red cube", "--steps", "2",
                            "--height", "64", "--width", "64", "--output", png], env=py_env, capture_output=True, text=True)
        check("sd txt2img on diffusers' snapshot", t.returncode == 0 and os.path.exists(png), t.stderr)

        # (c) Same shape. sd's cache also has the fp16 files of (a), so compare a fresh plain sd download.
        shutil.rmtree(sd_cache)
        subprocess.run([args.sd, "download", REPO], env=sd_env, capture_output=True, text=True, check=True)
        a, b = tree(sd_cache), tree(py_cache)
        check(f"cache trees identical ({len(a)} entries)", a == b,
              "only sd: " + repr(sorted(set(a) - set(b))) + "\n    only diffusers: " + repr(sorted(set(b) - set(a))))
        for line in a:
            print("    " + line)
        # The same for the fp16 variant: diffusers' file choice and sd's agree.
        sd2, py2 = sd_cache + "-fp16", py_cache + "-fp16"
        subprocess.run([args.sd, "download", REPO, "--variant", "fp16"], env=dict(base_env, HF_HUB_CACHE=sd2), capture_output=True, check=True)
        code, out, err = python(f"from diffusers import StableDiffusionPipeline; StableDiffusionPipeline.from_pretrained({REPO!r}, variant='fp16')",
                                dict(base_env, HF_HUB_CACHE=py2))
        a, b = tree(sd2), tree(py2)
        check(f"fp16 variant: cache trees identical ({len(a)} entries)", code == 0 and a == b,
              err + " only sd: " + repr(sorted(set(a) - set(b))) + "\n    only diffusers: " + repr(sorted(set(b) - set(a))))
        # (d) Which files: sd's choice equals diffusers' on awkward layouts.
        for name in LAYOUTS:
            for variant in ([None, "fp16"] if "fp16" in " ".join(LAYOUTS[name]) else [None]):
                tag = f"{name.replace('/', '_')}-{variant}"  # fresh caches: one snapshot folder per case
                env = dict(base_env, HF_HUB_CACHE=os.path.join(base, "lay-sd-" + tag))
                r = subprocess.run([args.sd, "download", name] + (["--variant", variant] if variant else []), env=env, capture_output=True, text=True)
                code, out, err = python(f"""
from diffusers import StableDiffusionPipeline
print(StableDiffusionPipeline.download({name!r}, variant={variant!r}, safety_checker=None))""", dict(base_env, HF_HUB_CACHE=os.path.join(base, "lay-py-" + tag)))
                listing = lambda d: sorted(os.path.relpath(os.path.join(p, f), d) for p, _, fs in os.walk(d) for f in fs) if d else []
                mine, theirs = listing(r.stdout.strip() if r.returncode == 0 else None), listing(out.splitlines()[-1] if code == 0 else None)
                check(f"files of {name} variant={variant}: sd == diffusers ({len(mine)} files)", r.returncode == 0 and code == 0 and mine == theirs,
                      (r.stderr + err)[-800:] + f" only sd: {sorted(set(mine) - set(theirs))} only diffusers: {sorted(set(theirs) - set(mine))}")
    finally:
        hub.terminate()
        hub.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
    print("ALL PASS" if ok else "SOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
