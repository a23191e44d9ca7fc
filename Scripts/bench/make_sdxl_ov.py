"""OpenVINO IR of the SDXL base architecture with random weights, for `bench_openvino.py --suite sdxl`: the UNet,
CLIP-L, OpenCLIP bigG (with projection) and the VAE decoder, each built in torch from the real configs
(../shared/reference-configs/stabilityai-stable-diffusion-xl-base-1.0), converted with ov.convert_model and saved
in f32 (the same graphs optimum-intel's OVStableDiffusionXLPipeline exports, without its pipeline around them).

    ~/.sd-ov-xl-venv/bin/python Scripts/bench/make_sdxl_ov.py [OUT] [--only unet text_encoder text_encoder_2 vae_decoder]
    ~/.sd-ov-venv/bin/python Scripts/bench/make_sdxl_ov.py --sd15-unet [OUT]

Default OUT: ~/.cache/sd-bench/sdxl-random-ov. `--sd15-unet` writes only the SD 1.5 UNet (its real config,
random weights; inputs sample, timestep, encoder_hidden_states, as optimum-intel exports it) to
OUT/unet (default ~/.cache/sd-bench/sd15-random-ov), which is all `bench_openvino.py --only unet_512` reads: the
per-model UNet comparison without the whole folder and its optimum export. Needs openvino and torch + diffusers + transformers in one
environment: a venv with openvino==2026.4.1 (Scripts/bench/requirements-openvino.txt's pin) that also sees
Scripts/reference/requirements.txt's packages. One model at a time: the UNet alone is 10 GB in fp32, and its
conversion peaked above 24 GB when traced at 1024x1024, so it is traced at 512x512.
"""
import argparse
import gc
import os
import sys

import openvino as ov
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF_XL = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs", "stabilityai-stable-diffusion-xl-base-1.0")
REF_15 = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs", "runwayml-stable-diffusion-v1-5")
PARTS = ["unet", "text_encoder", "text_encoder_2", "vae_decoder"]


class UNetStep(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}, return_dict=False)[0]


class Encoder(torch.nn.Module):
    """The outputs SDXL uses: the penultimate hidden states and the last output (pooled or projected)."""
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids):
        out = self.encoder(input_ids, output_hidden_states=True)
        return out.hidden_states[-2], out[0]


class Decoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


class SD15UNetStep(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


def build(part):
    torch.manual_seed(0)
    if part == "sd15_unet":
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(REF_15, "unet"))).eval()
        example = {"sample": torch.randn(2, 4, 64, 64), "timestep": torch.tensor([500], dtype=torch.int64),
                   "encoder_hidden_states": torch.randn(2, 77, 768)}
        return SD15UNetStep(unet), example
    if part == "unet":
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(REF_XL, "unet"))).eval()
        # Traced at 512x512: the graph does not depend on the size (bench_openvino.py reshapes it to 1024x1024),
        # and tracing at 1024 holds that size's activations beside two copies of the 10 GB of weights (OOM at 24 GB).
        example = {"sample": torch.randn(2, 4, 64, 64), "timestep": torch.tensor([500], dtype=torch.int64),
                   "encoder_hidden_states": torch.randn(2, 77, 2048), "text_embeds": torch.randn(2, 1280),
                   "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2)}
        return UNetStep(unet), example
    if part in ("text_encoder", "text_encoder_2"):
        cls = CLIPTextModel if part == "text_encoder" else CLIPTextModelWithProjection
        encoder = cls(CLIPTextConfig.from_pretrained(os.path.join(REF_XL, part))).float().eval()  # the configs say float16
        return Encoder(encoder), {"input_ids": torch.randint(0, encoder.config.vocab_size, (2, 77))}
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(REF_XL, "vae"))).eval()
    return Decoder(vae), {"latent_sample": torch.randn(1, 4, 128, 128)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--only", nargs="*", default=PARTS, choices=PARTS)
    ap.add_argument("--sd15-unet", action="store_true", help="only the SD 1.5 UNet, into OUT/unet")
    args = ap.parse_args()
    default = "~/.cache/sd-bench/sd15-random-ov" if args.sd15_unet else "~/.cache/sd-bench/sdxl-random-ov"
    out = os.path.expanduser(args.out or default)
    for part in (["sd15_unet"] if args.sd15_unet else args.only):
        path = os.path.join(out, "unet" if part == "sd15_unet" else part, "openvino_model.xml")
        if os.path.exists(path):
            print(f"{path} exists", file=sys.stderr)
            continue
        with torch.no_grad():
            module, example = build(part)
            model = ov.convert_model(module, example_input=example)
        for port, name in zip(model.inputs, example):
            port.get_tensor().set_names({name})
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Written under another name and moved into place: an interrupted run leaves no half model to time.
        tmp = os.path.join(os.path.dirname(path), "partial.xml")
        ov.save_model(model, tmp, compress_to_fp16=False)
        os.replace(tmp[:-4] + ".bin", path[:-4] + ".bin")
        os.replace(tmp, path)
        print(f"wrote {path}", file=sys.stderr, flush=True)
        del module, model, example
        gc.collect()


if __name__ == "__main__":
    sys.exit(main())
