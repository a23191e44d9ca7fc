"""Helpers the fixture generators share: a small CLIP vocabulary made like the real one, random
perturbation of a model's weights, and the synthetic test picture."""
import gzip
import json
import os

import numpy as np
import open_clip
import torch
from PIL import Image


def bytes_to_unicode():
    # GPT-2's reversible byte <-> printable-unicode table, which CLIP's BPE vocabulary is written in.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_small_vocab(dirname, merges_count=700):
    """A CLIP BPE vocabulary made like the real one, but with only the first `merges_count` merges."""
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1:1 + merges_count]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(dirname, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return len(vocab)


def randomise(model, scale=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def test_image(w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 120 * np.sin(x / 7.0)
    g = 127 + 120 * np.cos(y / 5.0)
    b = 255 * ((x // 16 + y // 16) % 2)
    return Image.fromarray(np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8))


def test_mask(w, h, box):
    """A white ellipse (centre x, y, radii x, y) on black: the region to repaint."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, rx, ry = box
    inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
    return Image.fromarray((inside * 255).astype(np.uint8), mode="L")
