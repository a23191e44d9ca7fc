"""The real webuiapi and openai clients against a running `sd serve` (started by check_clients.sh).

Pictures are compared, pixel for pixel, with what `sd txt2img` / `sd inpaint` write for the same seed and
options. Prints one line per check and 'N passed, N failed'; exits non-zero on any failure.
"""
import argparse
import base64
import io
import subprocess
import threading
import time
import urllib.request

import webuiapi
from openai import OpenAI
from PIL import Image

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--sd", required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--controlnet", required=True, help="the ControlNet folder the server was started with")
parser.add_argument("--out", required=True)
parser.add_argument("--long-side", type=int, default=64, help="picture size of the job that gets interrupted")
args = parser.parse_args()

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)


def sd(*cli):
    """Runs the sd CLI and returns its PNG as a PIL image."""
    out = f"{args.out}/cli-{len(results)}-{time.monotonic_ns()}.png"
    subprocess.run([args.sd, *cli, "--model", args.model, "--output", out], check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Image.open(out)


def same_pixels(a, b):
    return a.size == b.size and a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def pattern(w=64, h=64):
    img = Image.new("RGB", (w, h))
    img.putdata([(x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 127 // (w + h - 2)) for y in range(h) for x in range(w)])
    return img


init = pattern()
init_path = f"{args.out}/init.png"
init.save(init_path)
mask = Image.new("L", (64, 64), 0)
mask.paste(255, (32, 0, 64, 64))  # white = repaint (the right half)
mask_path = f"{args.out}/mask.png"
mask.save(mask_path)

# --- AUTOMATIC1111 client -------------------------------------------------------------------------
api = webuiapi.WebUIApi(host="127.0.0.1", port=args.port, sampler="Euler a", steps=4)

r = api.txt2img(prompt="a red cube", seed=42, width=64, height=64, steps=4, cfg_scale=7)
cli = sd("txt2img", "--prompt", "a red cube", "--seed", "42", "--steps", "4", "--width", "64", "--height", "64",
         "--scheduler", "euler-a", "--guidance-scale", "7")
check("webuiapi txt2img == sd txt2img (seed 42, Euler a)", same_pixels(r.image, cli))
check("webuiapi txt2img info seeds", r.info.get("all_seeds") == [42] and r.info.get("seed") == 42, r.info)
check("webuiapi txt2img PNG parameters", "Seed: 42" in r.image.info.get("parameters", ""), r.image.info)

r = api.txt2img(prompt="two", seed=100, width=64, height=64, steps=3, batch_size=2)
check("webuiapi batch seeds", r.info.get("all_seeds") == [100, 101] and len(r.images) == 2, r.info.get("all_seeds"))
cli = sd("txt2img", "--prompt", "two", "--seed", "101", "--steps", "3", "--width", "64", "--height", "64",
         "--scheduler", "euler-a", "--guidance-scale", "7")
check("webuiapi batch picture 2 == sd txt2img --seed 101", same_pixels(r.images[1], cli))

r = api.img2img(images=[init], mask_image=mask, prompt="a window", seed=5, steps=4, width=64, height=64,
                denoising_strength=0.9, sampler_name="Euler", cfg_scale=7)
cli = sd("inpaint", "--image", init_path, "--mask", mask_path, "--prompt", "a window", "--seed", "5", "--steps", "4",
         "--width", "64", "--height", "64", "--strength", "0.9", "--scheduler", "euler", "--guidance-scale", "7",
         "--padding-mask-crop", "0")
check("webuiapi img2img with mask == sd inpaint (inpaint_full_res -> padding mask crop 0)", same_pixels(r.image, cli))

r = api.img2img(images=[init], prompt="a house", seed=6, steps=4, width=64, height=64, denoising_strength=0.6,
                sampler_name="Euler", cfg_scale=7)
cli = sd("img2img", "--image", init_path, "--prompt", "a house", "--seed", "6", "--steps", "4", "--width", "64",
         "--height", "64", "--strength", "0.6", "--scheduler", "euler", "--guidance-scale", "7")
check("webuiapi img2img == sd img2img", same_pixels(r.image, cli))

# sd-webui-controlnet's API through webuiapi's ControlNetUnit.
check("webuiapi controlnet_model_list", api.controlnet_model_list() == ["tiny-controlnet-sd1"], api.controlnet_model_list())
check("webuiapi controlnet_module_list", "canny" in api.controlnet_module_list(), api.controlnet_module_list())
edges = Image.new("RGB", (64, 64), 0)
edges.paste((255, 255, 255), (8, 8, 56, 12))
edges.paste((255, 255, 255), (20, 8, 24, 60))
edges_path = f"{args.out}/edges.png"
edges.save(edges_path)
unit = webuiapi.ControlNetUnit(image=edges, module="none", model="tiny-controlnet-sd1", weight=0.8, resize_mode="Just Resize")
r = api.txt2img(prompt="a red cube", seed=7, width=64, height=64, steps=4, cfg_scale=7, sampler_name="Euler", controlnet_units=[unit])
cli = sd("txt2img", "--prompt", "a red cube", "--seed", "7", "--steps", "4", "--width", "64", "--height", "64",
         "--scheduler", "euler", "--guidance-scale", "7", "--controlnet", args.controlnet + ":0.8", "--control-image", edges_path)
check("webuiapi txt2img with a ControlNetUnit == sd txt2img --controlnet", same_pixels(r.image, cli))
check("webuiapi ControlNet infotext", 'ControlNet 0: "Module: none, Model: tiny-controlnet-sd1' in r.image.info.get("parameters", ""),
      r.image.info.get("parameters"))
detected = api.controlnet_detect([init], module="canny", processor_res=64, threshold_a=20, threshold_b=60)
detect_path = f"{args.out}/detect.png"
subprocess.run([args.sd, "detect", "--module", "canny", "--low", "20", "--high", "60", "--image", init_path, "--output", detect_path],
               check=True, timeout=60, stdout=subprocess.DEVNULL)
got = detected.image  # webuiapi decodes the answer's base64 images
check("webuiapi controlnet_detect canny == sd detect", same_pixels(got, Image.open(detect_path)))

p = api.get_progress()
check("webuiapi get_progress idle", p.get("progress") == 0 and p["state"]["job_count"] == 0, p)

long_result = {}


def long_job():
    try:
        long_result["r"] = api.txt2img(prompt="long", seed=1, width=args.long_side, height=args.long_side, steps=150)
    except Exception as e:  # noqa: BLE001 - reported below
        long_result["e"] = e


t = threading.Thread(target=long_job)
t.start()
deadline = time.time() + 60
seen = None
while time.time() < deadline:
    seen = api.get_progress()
    if seen["state"]["sampling_step"] >= 1:
        break
    time.sleep(0.05)
check("webuiapi get_progress while running", 0 < seen["progress"] <= 1 and seen["state"]["sampling_steps"] == 150, seen)
api.interrupt()
t.join(60)
r = long_result.get("r")
check("webuiapi interrupt ends the running job", not t.is_alive() and r is not None and r.info.get("interrupted") is True,
      long_result)
# As AUTOMATIC1111: the interrupted job still answers with the picture it was drawing (webuiapi's .image).
check("webuiapi interrupt returns the partial picture", r is not None and r.image is not None
      and r.image.size == (args.long_side, args.long_side) and len(r.info.get("infotexts", [])) == 1, long_result)

models = api.get_sd_models()
check("webuiapi get_sd_models", models and models[0]["model_name"] == "tiny-sd1", models)
samplers = [s["name"] for s in api.get_samplers()]
check("webuiapi get_samplers", "Euler a" in samplers and "DPM++ 2M Karras" in samplers, samplers)

# --- OpenAI client ----------------------------------------------------------------------------------
client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="unused", max_retries=0, timeout=120)
g = client.images.generate(model="sd", prompt="a boat", size="64x64", n=1, response_format="b64_json",
                           extra_body={"seed": 7, "steps": 4})
img = Image.open(io.BytesIO(base64.b64decode(g.data[0].b64_json)))
cli = sd("txt2img", "--prompt", "a boat", "--seed", "7", "--steps", "4", "--width", "64", "--height", "64")
check("openai images.generate == sd txt2img (seed 7, model scheduler)", same_pixels(img, cli))

g = client.images.generate(prompt="a boat", size="64x64", response_format="url", extra_body={"seed": 7, "steps": 4})
with urllib.request.urlopen(g.data[0].url, timeout=30) as f:
    served = Image.open(io.BytesIO(f.read()))
check("openai images.generate url", same_pixels(served, cli), g.data[0].url)

rgba = init.convert("RGBA")
alpha_mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
alpha_mask.paste((0, 0, 0, 0), (32, 0, 64, 64))  # OpenAI: transparent = edit
alpha_path = f"{args.out}/alpha.png"
alpha_mask.save(alpha_path)
with open(init_path, "rb") as image_file, open(alpha_path, "rb") as mask_file:
    e = client.images.edit(image=image_file, mask=mask_file, prompt="a window", size="64x64",
                           extra_body={"seed": 8, "steps": 4})
img = Image.open(io.BytesIO(base64.b64decode(e.data[0].b64_json)))
cli = sd("inpaint", "--image", init_path, "--mask", mask_path, "--prompt", "a window", "--seed", "8", "--steps", "4",
         "--width", "64", "--height", "64")
check("openai images.edit == sd inpaint", same_pixels(img, cli))

try:
    client.images.generate(prompt="x", size="65x64")
    check("openai 422 error", False, "no error raised")
except Exception as err:  # openai.UnprocessableEntityError
    check("openai 422 error", getattr(err, "status_code", None) == 422 and "size" in str(err), err)

failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
raise SystemExit(1 if failed else 0)
