"""PyTorch / diffusers side of the CPU benchmark: the real SD 1.5 (or SDXL) architecture with random weights (fp32).

    ~/.sd-ref-venv/bin/python Scripts/reference/bench_torch.py [--suite sd15|sdxl] [--runs N] [--threads 2] [--json]

--suite sdxl times what `sd bench --suite sdxl` does: the SDXL base UNet step at 1024x1024 (batch 2, with the
added text embeds and time ids), CLIP-L and OpenCLIP bigG with projection (batch 2 x 77), and the SDXL VAE decode
at 1024x1024.

Times, like `sd bench --suite sd15`: the UNet step (batch 2, the guidance pair) at 256x256 and 512x512,
a step with a ControlNet (ControlNet + UNet, 512x512, batch 2), the text encoder (batch 2 x 77 tokens), the VAE decode at 512x512, and a whole 20-step txt2img at 512x512
(PNDM, guidance 7.5). Reports min and median seconds and the process's peak resident memory.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs", "runwayml-stable-diffusion-v1-5")
REF_XL = os.path.join(os.path.dirname(ROOT), "shared", "reference-configs", "stabilityai-stable-diffusion-xl-base-1.0")
TOKENIZER = os.path.join(ROOT, "Tests", "StableDiffusionTests", "Fixtures", "tokenizer")


def timed(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--only", nargs="*", default=[], help="run only these cases (as sd bench --only)")
    ap.add_argument("--suite", choices=["sd15", "sdxl"], default="sd15")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    want = lambda name: not args.only or name in args.only

    with torch.no_grad():
        if args.suite == "sdxl":
            sdxl(results, want, args.runs)
        else:
            sd15(results, want, args)
    report(results, args)


def sdxl(results, want, runs):
    """The SDXL base architecture, one model at a time (the UNet alone is 10 GB in fp32)."""
    if want("unet_1024"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(REF_XL, "unet"))).eval()
        x = torch.randn(2, 4, 128, 128)
        ctx = torch.randn(2, 77, 2048)
        added = {"text_embeds": torch.randn(2, 1280), "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]] * 2)}
        results["unet_1024"] = timed(lambda: unet(x, 500, encoder_hidden_states=ctx, added_cond_kwargs=added), runs)
        del unet
    for name, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
        if want(name):
            encoder = cls(CLIPTextConfig.from_pretrained(os.path.join(REF_XL, name))).float().eval()  # the configs say float16
            ids = torch.randint(0, encoder.config.vocab_size, (2, 77))
            results[name] = timed(lambda: encoder(ids, output_hidden_states=True), runs)
            del encoder
    if want("vae_decode_1024"):
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(REF_XL, "vae"))).eval()
        z = torch.randn(1, 4, 128, 128)
        results["vae_decode_1024"] = timed(lambda: vae.decode(z), runs)


def sd15(results, want, args):
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(REF, "unet"))).eval()
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(REF, "vae"))).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(REF, "text_encoder"))).eval()
    ctx = torch.randn(2, 77, 768)
    for size in [s for s in (256, 512) if want(f"unet_{s}")]:
        x = torch.randn(2, 4, size // 8, size // 8)
        results[f"unet_{size}"] = timed(lambda: unet(x, 500, encoder_hidden_states=ctx), args.runs)
    if want("controlnet_unet_512"):
        # One guided step with a ControlNet (control_v11p_sd15_canny's config), as the ControlNet pipelines run it.
        cn_config = os.path.join(os.path.dirname(REF), "lllyasviel-control_v11p_sd15_canny")
        controlnet = ControlNetModel.from_config(ControlNetModel.load_config(cn_config)).eval()
        x = torch.randn(2, 4, 64, 64)
        hint = torch.rand(2, 3, 512, 512)

        def step():
            down, mid = controlnet(x, 500, encoder_hidden_states=ctx, controlnet_cond=hint, return_dict=False)
            unet(x, 500, encoder_hidden_states=ctx, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        results["controlnet_unet_512"] = timed(step, args.runs)
    ids = torch.randint(0, 49408, (2, 77))
    if want("text_encoder"):
        results["text_encoder"] = timed(lambda: text_encoder(ids), args.runs)
    z = torch.randn(1, 4, 64, 64)
    if want("vae_decode_512"):
        results["vae_decode_512"] = timed(lambda: vae.decode(z), args.runs)
    if not args.skip_pipeline and want("txt2img_20_512"):
        # The real CLIP vocabulary, as the SD 1.5 tokenizer has it (committed with the tokenizer fixtures).
        tok_dir = "/tmp/sd-bench-tokenizer"
        os.makedirs(tok_dir, exist_ok=True)
        for f in ("vocab.json", "merges.txt"):
            src = os.path.join(TOKENIZER, "clip-bpe", f)
            if not os.path.exists(os.path.join(tok_dir, f)):
                os.symlink(src, os.path.join(tok_dir, f))
        for f in ("tokenizer_config.json", "special_tokens_map.json"):
            with open(os.path.join(REF, "tokenizer", f)) as s, open(os.path.join(tok_dir, f), "w") as d:
                d.write(s.read())
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        scheduler = PNDMScheduler.from_pretrained(os.path.join(REF, "scheduler"))
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        run = lambda: pipe("a photograph of an astronaut riding a horse", num_inference_steps=20, height=512,
                           width=512, generator=torch.Generator("cpu").manual_seed(0), output_type="np")
        results["txt2img_20_512"] = timed(run, max(1, args.runs - 1))


def report(results, args):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": args.threads, "peak_rss_bytes": peak,
                          "results": {k: {"min": v[0], "median": v[1]} for k, v in results.items()}}))
    else:
        print(f"torch {torch.__version__}, {args.threads} threads")
        for k, (mn, md) in results.items():
            print(f"{k:20s} min {mn:8.3f} s   median {md:8.3f} s")
        print(f"peak RSS {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
