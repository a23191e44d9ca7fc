"""Writes the random-weights diffusers folders that Scripts/bench/whole_pipeline.py runs every engine on, and
their OpenVINO exports. All are made once and cached; a folder that is already complete is kept.

    ~/.sd-ref-venv/bin/python Scripts/bench/make_sd15_folder.py [OUT] [--arch sd15|sd-turbo] [--openvino [OV_OUT]]
        [--taesd [TAESD_OUT]] [--ov-python ~/.sd-ov-venv/bin/python] [--force]

OUT (default ~/.cache/sd-bench/sd15-random): the real SD 1.5 architecture (UNet, VAE, text encoder and
scheduler configs from ../shared/reference-configs, as Scripts/reference/bench_torch.py builds it) with
PyTorch's default random initialisation under torch.manual_seed(0), fp32 safetensors (about 4 GB), the real
CLIP vocabulary (the committed tokenizer fixture) and no safety checker. `--arch sd-turbo` (default OUT
~/.cache/sd-bench/sd-turbo-random): SD-Turbo's architecture, which is SD 2.1 base's configs with Euler and
"trailing" timesteps (../shared/reference-configs/PROVENANCE.md).

--taesd (default TAESD_OUT ~/.cache/sd-bench/taesd-random): an AutoencoderTiny with madebyollin/taesd's config
and random weights; with --openvino also its decoder as OpenVINO IR (TAESD_OUT-ov/vae_decoder), converted by
openvino.convert_model since optimum-intel does not export AutoencoderTiny.

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
SHARED_ROOT = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs")
FIXTURES = os.path.join(ROOT, "Tests", "StableDiffusionTests", "Fixtures")
CACHE = os.path.expanduser("~/.cache/sd-bench")
# arch: (reference-configs folder, default output name, scheduler class, scheduler overrides)
ARCHS = {
    "sd15": ("runwayml-stable-diffusion-v1-5", "sd15-random", "PNDMScheduler", {}),
    "sd-turbo": ("stabilityai-stable-diffusion-2-1-base", "sd-turbo-random", "EulerDiscreteScheduler",
                 {"timestep_spacing": "trailing"}),
}
WEIGHT_FILES = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors")


def config_dir(arch, component):
    """The committed fixture configs where they exist, else ../shared/reference-configs."""
    name = ARCHS[arch][0]
    for base in (os.path.join(FIXTURES, "reference-configs", name), os.path.join(SHARED_ROOT, name)):
        if os.path.isdir(os.path.join(base, component)):
            return os.path.join(base, component)
    sys.exit(f"no {arch} {component} config: expected {os.path.join(SHARED_ROOT, name, component)}")


def folder_complete(out):
    return os.path.exists(os.path.join(out, "model_index.json")) and all(
        os.path.exists(os.path.join(out, f)) for f in WEIGHT_FILES)


def make_folder(out, arch):
    import diffusers
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tok_dir = os.path.join(tmp, "tokenizer-src")
    os.makedirs(tok_dir)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(FIXTURES, "tokenizer", "clip-bpe", f), tok_dir)
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(config_dir(arch, "tokenizer"), f), tok_dir)

    torch.manual_seed(0)
    with torch.no_grad():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir(arch, "unet"))).eval()
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir(arch, "vae"))).eval()
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir(arch, "text_encoder"))).float().eval()
    _, _, scheduler_class, overrides = ARCHS[arch]
    scheduler_cls = getattr(diffusers, scheduler_class)
    scheduler = scheduler_cls.from_config(scheduler_cls.load_config(config_dir(arch, "scheduler")), **overrides)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(tok_dir), unet=unet,
        scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp, safe_serialization=True)
    # Newer transformers save only tokenizer.json; keep the files of the real SD 1.5 folder too, for
    # readers that want them (older transformers, optimum's tokenizer conversion).
    for f in os.listdir(tok_dir):
        if not os.path.exists(os.path.join(tmp, "tokenizer", f)):
            shutil.copy(os.path.join(tok_dir, f), os.path.join(tmp, "tokenizer"))
    shutil.rmtree(tok_dir)
    with open(os.path.join(tmp, "README.txt"), "w") as f:
        f.write(f"Random weights (torch.manual_seed(0), default init) with the real {ARCHS[arch][0]} configs"
                f"{' and ' + str(overrides) if overrides else ''}, for benchmarks only. Written by "
                f"Scripts/bench/make_sd15_folder.py --arch {arch} with torch {torch.__version__}.\n")
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


def make_taesd(out):
    """A random-weights AutoencoderTiny with madebyollin/taesd's config (as --vae takes it)."""
    if os.path.exists(os.path.join(out, "diffusion_pytorch_model.safetensors")):
        print(f"{out} exists; kept", file=sys.stderr)
        return
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    taesd = AutoencoderTiny.from_config(AutoencoderTiny.load_config(os.path.join(SHARED_ROOT, "madebyollin-taesd")))
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    taesd.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"wrote {out}", file=sys.stderr)


def taesd_openvino_child(taesd, ov_out):
    """Inside the OpenVINO venv: the TAESD decoder (latents in, picture in [-1, 1] out, as AutoencoderTiny.decode)
    as OpenVINO IR, traced at 64x64 latents and left dynamic in batch and size."""
    import openvino
    import torch
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny.from_pretrained(taesd).eval()

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latent_sample):
            return self.vae.decode(latent_sample).sample

    with torch.no_grad():
        model = openvino.convert_model(Decoder(), example_input=torch.zeros(1, 4, 64, 64),
                                       input=[openvino.PartialShape([-1, 4, -1, -1])])
    tmp = ov_out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "vae_decoder"))
    openvino.save_model(model, os.path.join(tmp, "vae_decoder", "openvino_model.xml"), compress_to_fp16=False)
    shutil.rmtree(ov_out, ignore_errors=True)
    os.rename(tmp, ov_out)


def export_taesd_openvino(taesd, ov_python):
    ov_out = taesd + "-ov"
    if os.path.exists(os.path.join(ov_out, "vae_decoder", "openvino_model.xml")):
        print(f"OpenVINO TAESD {ov_out} exists; kept", file=sys.stderr)
        return
    subprocess.run([ov_python, os.path.abspath(__file__), "--taesd-ov-child", taesd, ov_out], check=True)
    print(f"OpenVINO TAESD decoder in {ov_out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="sd15")
    ap.add_argument("--openvino", nargs="?", const="", default=None, metavar="OV_OUT",
                    help="also export with optimum-intel (default OUT-ov)")
    ap.add_argument("--taesd", nargs="?", const=os.path.join(CACHE, "taesd-random"), default=None, metavar="TAESD_OUT")
    ap.add_argument("--ov-python", default=os.path.expanduser("~/.sd-ov-venv/bin/python"))
    ap.add_argument("--force", action="store_true", help="rewrite the folder (and the export) even if present")
    ap.add_argument("--taesd-ov-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.taesd_ov_child:
        return taesd_openvino_child(*args.taesd_ov_child)
    out = os.path.abspath(os.path.expanduser(args.out or os.path.join(CACHE, ARCHS[args.arch][1])))
    ov_out = None if args.openvino is None else os.path.abspath(os.path.expanduser(args.openvino or out + "-ov"))
    if args.force:
        shutil.rmtree(out, ignore_errors=True)
        if ov_out:
            shutil.rmtree(ov_out, ignore_errors=True)
    if folder_complete(out):
        print(f"{out} exists; kept", file=sys.stderr)
    else:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        make_folder(out, args.arch)
        print(f"wrote {out}", file=sys.stderr)
    prefix_text_encoder(out)
    with open(os.path.join(out, "model_index.json")) as f:
        assert json.load(f)["_class_name"] == "StableDiffusionPipeline"
    if ov_out:
        export_openvino(out, ov_out, os.path.expanduser(args.ov_python))
        print(f"OpenVINO export in {ov_out}", file=sys.stderr)
    if args.taesd:
        taesd = os.path.abspath(os.path.expanduser(args.taesd))
        make_taesd(taesd)
        if ov_out:
            export_taesd_openvino(taesd, os.path.expanduser(args.ov_python))


if __name__ == "__main__":
    main()
