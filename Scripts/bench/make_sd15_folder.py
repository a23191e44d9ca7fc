"""Writes the random-weights SD 1.5 diffusers folder that Scripts/bench/whole_pipeline.py runs every engine
on, and its OpenVINO export. Both are made once and cached; a folder that is already complete is kept.

    ~/.sd-ref-venv/bin/python Scripts/bench/make_sd15_folder.py [OUT] [--openvino [OV_OUT]]
        [--ov-python ~/.sd-ov-venv/bin/python] [--force]

OUT (default ~/.cache/sd-bench/sd15-random): the real SD 1.5 architecture (UNet, VAE, text encoder and
scheduler configs from ../shared/reference-configs, as Scripts/reference/bench_torch.py builds it) with
PyTorch's default random initialisation under torch.manual_seed(0), fp32 safetensors (about 4 GB), the real
CLIP vocabulary (the committed tokenizer fixture) and no safety checker.

--openvino (default OV_OUT ~/.cache/sd-bench/sd15-random-ov): exports OUT with optimum-intel's
`optimum-cli export openvino --task text-to-image --weight-format fp32`, run by --ov-python (the venv of
Scripts/bench/requirements-openvino.txt). The export peaks at several GB; it runs after this process has
dropped its own copy of the model.
"""
import argparse
import gc
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs", "runwayml-stable-diffusion-v1-5")
FIXTURES = os.path.join(ROOT, "Tests", "StableDiffusionTests", "Fixtures")
DEFAULT_OUT = os.path.expanduser("~/.cache/sd-bench/sd15-random")
DEFAULT_OV_OUT = os.path.expanduser("~/.cache/sd-bench/sd15-random-ov")
WEIGHT_FILES = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors")


def config_dir(component):
    """The committed fixture configs where they exist (unet, vae), else ../shared/reference-configs."""
    for base in (os.path.join(FIXTURES, "reference-configs", "runwayml-stable-diffusion-v1-5"), SHARED):
        if os.path.isdir(os.path.join(base, component)):
            return os.path.join(base, component)
    sys.exit(f"no SD 1.5 {component} config: expected {SHARED}/{component}")


def folder_complete(out):
    return os.path.exists(os.path.join(out, "model_index.json")) and all(
        os.path.exists(os.path.join(out, f)) for f in WEIGHT_FILES)


def make_folder(out):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tok_dir = os.path.join(tmp, "tokenizer-src")
    os.makedirs(tok_dir)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(FIXTURES, "tokenizer", "clip-bpe", f), tok_dir)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(config_dir("tokenizer"), f), tok_dir)

    torch.manual_seed(0)
    with torch.no_grad():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir("unet"))).eval()
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir("vae"))).eval()
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir("text_encoder"))).eval()
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(tok_dir), unet=unet,
        scheduler=PNDMScheduler.from_pretrained(config_dir("scheduler")), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp, safe_serialization=True)
    # Newer transformers save only tokenizer.json; keep the files of the real SD 1.5 folder too, for
    # readers that want them (older transformers, optimum's tokenizer conversion).
    for f in os.listdir(tok_dir):
        if not os.path.exists(os.path.join(tmp, "tokenizer", f)):
            shutil.copy(os.path.join(tok_dir, f), os.path.join(tmp, "tokenizer"))
    shutil.rmtree(tok_dir)
    with open(os.path.join(tmp, "README.txt"), "w") as f:
        f.write("Random weights (torch.manual_seed(0), default init) with the real SD 1.5 configs, for benchmarks "
                f"only. Written by Scripts/bench/make_sd15_folder.py with torch {torch.__version__}.\n")
    del pipe, unet, vae, text_encoder
    gc.collect()
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def prefix_text_encoder(out):
    """Writes the text encoder's tensors under the `text_model.` names of the real SD 1.5 folder (and of
    transformers 4): transformers 5 saves them without the prefix, and the transformers that optimum-intel
    pins would then ignore them and export a freshly initialised text encoder. Idempotent."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = os.path.join(out, "text_encoder", "model.safetensors")
    with safe_open(path, "pt") as f:
        keys = list(f.keys())
        if all(k.startswith("text_model.") for k in keys):
            return
        tensors = {(k if k.startswith("text_model.") else "text_model." + k): f.get_tensor(k) for k in keys}
    save_file(tensors, path + ".tmp", metadata={"format": "pt"})
    os.replace(path + ".tmp", path)
    print(f"{path}: tensors renamed to text_model.*", file=sys.stderr)


def export_openvino(folder, ov_out, ov_python):
    if os.path.exists(os.path.join(ov_out, "unet", "openvino_model.xml")) and os.path.exists(
            os.path.join(ov_out, "model_index.json")):
        print(f"OpenVINO export {ov_out} exists; kept", file=sys.stderr)
        return
    cli = os.path.join(os.path.dirname(ov_python), "optimum-cli")
    if not os.path.exists(cli):
        sys.exit(f"{cli} not found: make the OpenVINO venv (Scripts/bench/requirements-openvino.txt) or pass --ov-python")
    tmp = ov_out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [cli, "export", "openvino", "--model", folder, "--task", "text-to-image", "--weight-format", "fp32", tmp]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    shutil.rmtree(ov_out, ignore_errors=True)
    os.rename(tmp, ov_out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--openvino", nargs="?", const=DEFAULT_OV_OUT, default=None, metavar="OV_OUT")
    ap.add_argument("--ov-python", default=os.path.expanduser("~/.sd-ov-venv/bin/python"))
    ap.add_argument("--force", action="store_true", help="rewrite the folder (and the export) even if present")
    args = ap.parse_args()
    out = os.path.abspath(os.path.expanduser(args.out))
    if args.force:
        shutil.rmtree(out, ignore_errors=True)
        if args.openvino:
            shutil.rmtree(os.path.abspath(os.path.expanduser(args.openvino)), ignore_errors=True)
    if folder_complete(out):
        print(f"{out} exists; kept", file=sys.stderr)
    else:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        make_folder(out)
        print(f"wrote {out}", file=sys.stderr)
    prefix_text_encoder(out)
    with open(os.path.join(out, "model_index.json")) as f:
        assert json.load(f)["_class_name"] == "StableDiffusionPipeline"
    if args.openvino:
        export_openvino(out, os.path.abspath(os.path.expanduser(args.openvino)), os.path.expanduser(args.ov_python))
        print(f"OpenVINO export in {os.path.abspath(os.path.expanduser(args.openvino))}", file=sys.stderr)


if __name__ == "__main__":
    main()
