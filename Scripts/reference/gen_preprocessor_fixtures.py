"""Control-image preprocessor fixtures. Edge maps from OpenCV's cv2.Canny (the detector sd-webui-controlnet's `canny` module and the diffusers ControlNet
docs run) for CannyEdges' exactness tests: RGB, grayscale and RGBA pictures with smooth shading, sharp shapes, texture
and noise, at several threshold pairs (one given the wrong way round).

    ~/.sd-ref-venv/bin/pip install opencv-python-headless==4.10.0.84
    ~/.sd-ref-venv/bin/python Scripts/reference/gen_preprocessor_fixtures.py

Writes Tests/StableDiffusionTests/Fixtures/canny/: NAME.png (input), NAME-LOW-HIGH.png (cv2.Canny's output), cases.json;
and depth.png: the web UI's depth-module normalisation ((d - min) / (max - min) * 255) of transformers' DPT on the
tiny depth-to-image model's estimator, bicubic to the picture's size, for scene_rgb.png.
"""
import json
import os

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = "Tests/StableDiffusionTests/Fixtures/canny"
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(7)


def scene(w, h, seed):
    """A picture with what photographs have: soft light, objects with hard and soft edges, texture, sensor noise."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.stack([90 + 80 * y / h, 120 + 60 * y / h, 200 - 40 * y / h], -1)
    img = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(7):
        x0, y0 = r.integers(0, w - 20), r.integers(0, h - 20)
        x1, y1 = x0 + r.integers(10, w // 2), y0 + r.integers(10, h // 2)
        colour = tuple(int(c) for c in r.integers(0, 256, 3))
        if r.random() < 0.5:
            d.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            d.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    a = np.asarray(img).astype(np.float32)
    a += 12 * np.sin(x / 3.0)[..., None] * (y > h * 0.6)[..., None]  # a striped "floor"
    a += r.normal(0, 4, a.shape)  # noise
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def hwc3(x):
    """sd-webui-controlnet's HWC3: gray to three channels, RGBA blended over white (float32, truncated)."""
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 1:
        return np.concatenate([x, x, x], axis=2)
    if x.shape[2] == 4:
        color = x[:, :, 0:3].astype(np.float32)
        alpha = x[:, :, 3:4].astype(np.float32) / 255.0
        return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    return x


pictures = {
    "scene_rgb": scene(160, 120, 1),
    "scene2_rgb": scene(97, 61, 2),  # odd sizes
    "scene_gray": scene(128, 96, 3).convert("L"),
    "scene_rgba": scene(80, 64, 4).convert("RGBA"),
}
alpha = np.asarray(pictures["scene_rgba"]).copy()
alpha[..., 3] = rng.integers(0, 256, alpha.shape[:2])
pictures["scene_rgba"] = Image.fromarray(alpha, "RGBA")
thresholds = [(100, 200), (50, 150), (200, 100), (10.7, 30.2), (0, 0)]
cases = []
for name, img in pictures.items():
    img.save(os.path.join(OUT, f"{name}.png"))
    a = hwc3(np.asarray(img))
    for lo, hi in thresholds:
        edges = cv2.Canny(np.ascontiguousarray(a), lo, hi)
        out = f"{name}-{lo}-{hi}.png"
        Image.fromarray(edges).save(os.path.join(OUT, out))
        cases.append({"input": f"{name}.png", "low": lo, "high": hi, "expected": out, "edge_pixels": int((edges > 0).sum())})
        print(out, int((edges > 0).sum()), "edge pixels")
json.dump({"opencv": cv2.__version__, "cases": cases}, open(os.path.join(OUT, "cases.json"), "w"), indent=1)


def depth_fixture():
    import torch
    from transformers import DPTForDepthEstimation, DPTImageProcessor
    root = "Models/tiny-sd2-depth"
    proc = DPTImageProcessor.from_pretrained(os.path.join(root, "feature_extractor"))
    model = DPTForDepthEstimation.from_pretrained(os.path.join(root, "depth_estimator"), torch_dtype=torch.float32).eval()
    img = Image.open(os.path.join(OUT, "scene_rgb.png")).convert("RGB")
    with torch.no_grad():
        d = model(proc(images=img, return_tensors="pt").pixel_values).predicted_depth
        d = torch.nn.functional.interpolate(d[:, None], size=(img.height, img.width), mode="bicubic", align_corners=False)[0, 0]
    d = (d - d.min()) / (d.max() - d.min())
    Image.fromarray((d * 255).clip(0, 255).numpy().astype(np.uint8)).save(os.path.join(OUT, "depth.png"))
    print("depth.png", img.size)


depth_fixture()
