#!/usr/bin/env python3
"""Generates the imaging fixtures: small PNG/JPEG inputs and what PIL + diffusers make of them.

Writes Tests/StableDiffusionTests/Fixtures/imaging/: the input images, and expected.safetensors with
 - decoded/<file>          uint8 HxWxC, diffusers.utils.load_image(file) (EXIF-transposed, RGB)
 - resize/<case>           uint8, PIL Image.resize with each filter and several sizes
 - pre/<case>              float32 NHWC, VaeImageProcessor.preprocess (NCHW permuted to NHWC)
 - post/<case>             uint8 NHWC, VaeImageProcessor.postprocess(output_type="pil")
 - crop/<case>             int32 (x1, y1, x2, y2), get_crop_region
 - overlay/<case>          uint8, apply_overlay
and cases.json describing each case's arguments. Run from the repository root:

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_imaging_fixtures.py
"""
import io
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import load_image

OUT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "StableDiffusionTests", "Fixtures", "imaging"))
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1234)
T = {}
cases = {"decoded": [], "resize": [], "pre": [], "post": [], "crop": [], "overlay": []}


def smooth_rgb(w, h):
    """Gradients plus noise: exercises both smooth areas and sharp detail."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(w + h - 2, 1)], -1)
    noise = rng.integers(-60, 60, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


rgb40 = smooth_rgb(40, 30)
rgb23 = smooth_rgb(23, 17)
alpha40 = rng.integers(0, 256, size=(30, 40), dtype=np.uint8)
alpha40[:5] = 0
alpha40[-5:] = 255


def save(name, im, **kw):
    im.save(os.path.join(OUT, name), **kw)
    cases["decoded"].append(name)
    T["decoded/" + name] = np.ascontiguousarray(np.array(load_image(os.path.join(OUT, name))))


# PNG variants
save("rgb8.png", Image.fromarray(rgb40))
save("rgba8.png", Image.fromarray(np.dstack([rgb40, alpha40])))
save("gray8.png", Image.fromarray(rgb40[..., 0]))
save("gray_alpha8.png", Image.fromarray(np.dstack([rgb40[..., 1], alpha40]), mode="LA"))
save("palette.png", Image.fromarray(rgb23).quantize(colors=37))
pal = Image.fromarray(rgb23).quantize(colors=16)
pal.info["transparency"] = 3
save("palette_trns.png", pal, transparency=3)
save("gray1bit.png", Image.fromarray(rgb23[..., 0] > 128))


def png16(name, arr, mode):
    """16-bit PNGs written with pypng-free raw encoding via PIL where it can, else by hand."""
    import zlib, struct
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    color = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    raw = b"".join(b"\x00" + arr[r].astype(">u2").tobytes() for r in range(h))
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    cases["decoded"].append(name)
    T["decoded/" + name] = np.ascontiguousarray(np.array(load_image(os.path.join(OUT, name))))


wide = rng.integers(0, 65536, size=(17, 23, 4)).astype(np.uint16)
png16("rgb16.png", wide[..., :3], "RGB")
png16("rgba16.png", wide, "RGBA")
png16("gray_alpha16.png", wide[..., :2], "LA")
g16 = wide[..., 0].copy()
g16[:, :5] = rng.integers(0, 300, size=(17, 5))  # PIL clips I;16 to 255: keep some values below
png16("gray16.png", g16, "I;16")

# JPEG variants
save("baseline.jpg", Image.fromarray(rgb40), quality=90)
save("baseline444.jpg", Image.fromarray(rgb23), quality=85, subsampling=0)
save("progressive.jpg", Image.fromarray(rgb40), quality=80, progressive=True)
save("gray.jpg", Image.fromarray(rgb40[..., 2]), quality=90)
save("cmyk.jpg", Image.fromarray(rgb23).convert("CMYK"), quality=92)
for o in (3, 6, 8):
    exif = Image.Exif()
    exif[0x0112] = o
    save(f"exif{o}.jpg", Image.fromarray(rgb23), quality=90, exif=exif.tobytes())

# Resize (PIL) on RGB, L and RGBA
src_rgb = Image.fromarray(rgb40)
src_l = load_image(os.path.join(OUT, "baseline444.jpg")).convert("L")
src_rgba = Image.fromarray(np.dstack([rgb40, alpha40]))
F = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
for sname, src in (("rgb", src_rgb), ("l", src_l), ("rgba", src_rgba)):
    for fname, f in F.items():
        for (w, h) in ((16, 16), (64, 48), (24, 40), (7, 5), (41, 29), (40, 13), (39, 29), (36, 8), (32, 24)):
            key = f"{sname}_{fname}_{w}x{h}"
            T["resize/" + key] = np.ascontiguousarray(np.array(src.resize((w, h), resample=f)))
            cases["resize"].append({"key": key, "src": sname, "filter": fname, "w": w, "h": h})
# a box resize of zero height (used by resize_and_fill)
for fname, f in F.items():
    key = f"rgb_{fname}_box_40x6"
    T["resize/" + key] = np.array(src_rgb.resize((40, 6), resample=f, box=(0, 30, 40, 30)))
    cases["resize"].append({"key": key, "src": "rgb", "filter": fname, "w": 40, "h": 6, "box": [0, 30, 40, 30]})
    key = f"rgb_{fname}_box_frac"
    T["resize/" + key] = np.array(src_rgb.resize((19, 11), resample=f, box=(2.5, 3.25, 37.0, 20.5)))
    cases["resize"].append({"key": key, "src": "rgb", "filter": fname, "w": 19, "h": 11, "box": [2.5, 3.25, 37.0, 20.5]})

# Preprocess
mask_arr = np.zeros((30, 40, 3), np.uint8)
mask_arr[8:19, 22:33] = 255
mask_arr[12:15, 5:9] = (120, 200, 40)  # a gray-ish, non-binary blob
mask_arr[25, 30] = 90
mask_img = Image.fromarray(mask_arr)
mask_img.save(os.path.join(OUT, "mask.png"))
Image.fromarray(rgb40).save(os.path.join(OUT, "init.png"))


def pre(key, proc, img_name, img, **kw):
    t = proc.preprocess(img, **kw)
    T["pre/" + key] = np.ascontiguousarray(t.permute(0, 2, 3, 1).numpy().astype(np.float32))
    c = {"key": key, "image": img_name}
    for k, v in kw.items():
        c[k] = list(v) if isinstance(v, tuple) else v
    c["config"] = {k: proc.config[k] for k in ("vae_scale_factor", "resample", "do_normalize", "do_binarize", "do_convert_grayscale")}
    cases["pre"].append(c)


ip = VaeImageProcessor(vae_scale_factor=8)
mp = VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
up = VaeImageProcessor(vae_scale_factor=4, resample="bicubic")
pre("image_default", ip, "init.png", src_rgb)
pre("image_32x48", ip, "init.png", src_rgb, height=32, width=48)
pre("image_23x17_default", ip, "baseline444.jpg", load_image(os.path.join(OUT, "baseline444.jpg")))
pre("upscale_default", up, "baseline444.jpg", load_image(os.path.join(OUT, "baseline444.jpg")))
pre("mask_default", mp, "mask.png", mask_img)
pre("mask_16x24", mp, "mask.png", mask_img, height=16, width=24)
pre("mask_l_40x56", mp, "mask.png", mask_img.convert("L"), height=40, width=56)
for (w, h, pad) in ((32, 24, 4), (16, 32, 0), (48, 16, 2), (24, 24, 32)):
    region = mp.get_crop_region(mask_img, w, h, pad=pad)
    key = f"crop_{w}x{h}_pad{pad}"
    T["crop/" + key] = np.array(region, dtype=np.int32)
    cases["crop"].append({"key": key, "mask": "mask.png", "width": w, "height": h, "pad": pad})
    pre(f"fill_image_{w}x{h}_pad{pad}", ip, "init.png", src_rgb, height=h, width=w, resize_mode="fill", crops_coords=region)
    pre(f"fill_mask_{w}x{h}_pad{pad}", mp, "mask.png", mask_img, height=h, width=w, resize_mode="fill", crops_coords=region)
for (w, h) in ((48, 24), (16, 40)):
    pre(f"fill_image_{w}x{h}", ip, "init.png", src_rgb, height=h, width=w, resize_mode="fill")
    pre(f"crop_image_{w}x{h}", ip, "init.png", src_rgb, height=h, width=w, resize_mode="crop")

# Postprocess
x = torch.from_numpy(rng.uniform(-1.2, 1.2, size=(2, 3, 5, 7)).astype(np.float32))
x[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 0.0, (2 * 127.5 / 255) - 1])
T["post/input"] = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
T["post/output"] = np.stack([np.array(i) for i in ip.postprocess(x, output_type="pil")])
T["post/output_nodenorm"] = np.stack([np.array(i) for i in ip.postprocess(x * 0.5 + 0.5, output_type="pil", do_denormalize=[False, False])])

# Overlay
gen = Image.fromarray(smooth_rgb(32, 24))
gen.save(os.path.join(OUT, "generated32x24.png"))
gray_mask = Image.fromarray(np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1)))
gray_mask.save(os.path.join(OUT, "gradient_mask.png"))
region = mp.get_crop_region(mask_img, 32, 24, pad=4)
T["overlay/crop"] = np.array(ip.apply_overlay(mask_img, src_rgb, gen, region))
cases["overlay"].append({"key": "crop", "mask": "mask.png", "init": "init.png", "image": "generated32x24.png", "crop": list(region)})
gen40 = Image.fromarray(smooth_rgb(40, 30))
gen40.save(os.path.join(OUT, "generated40x30.png"))
T["overlay/gradient"] = np.array(ip.apply_overlay(gray_mask, src_rgb, gen40))
cases["overlay"].append({"key": "gradient", "mask": "gradient_mask.png", "init": "init.png", "image": "generated40x30.png"})
T["overlay/gradient_crop"] = np.array(ip.apply_overlay(gray_mask, src_rgb, gen, (4, 3, 36, 27)))
cases["overlay"].append({"key": "gradient_crop", "mask": "gradient_mask.png", "init": "init.png", "image": "generated32x24.png", "crop": [4, 3, 36, 27]})

save_file({k: np.ascontiguousarray(v) for k, v in T.items()}, os.path.join(OUT, "expected.safetensors"))
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump(cases, f, indent=1)
print("wrote", len(T), "tensors to", OUT)
