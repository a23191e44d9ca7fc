#!/usr/bin/env python3
"""Writes Tests/StableDiffusionTests/Fixtures/random/: torch.randn outputs for the Swift TorchGenerator tests.

cases.json lists cases; each case is one generator (manual_seed) and a sequence of draws on it
(consecutive draws check that the state advances exactly as torch's). Values of all float32 draws are
concatenated in values_f32.bin, float64 draws in values_f64.bin (little-endian), at the offsets recorded.
Run with the reference venv: /root/.sd-ref-venv/bin/python Scripts/reference/gen_random_fixtures.py
"""
import json
import os
import sys

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "StableDiffusionTests", "Fixtures", "random")


def main():
    os.makedirs(OUT, exist_ok=True)
    f32, f64 = [], []
    n32 = n64 = 0
    cases = []

    def add(seed, draws, name):
        nonlocal n32, n64
        g = torch.Generator("cpu").manual_seed(seed)
        out = []
        for shape, dtype in draws:
            t = torch.randn(shape, generator=g, dtype=torch.float64 if dtype == "f64" else torch.float32)
            flat = t.reshape(-1).numpy()
            if dtype == "f64":
                out.append({"shape": list(shape), "dtype": dtype, "offset": n64})
                f64.append(flat.astype("<f8")); n64 += flat.size
            else:
                out.append({"shape": list(shape), "dtype": dtype, "offset": n32})
                f32.append(flat.astype("<f4")); n32 += flat.size
        cases.append({"name": name, "seed": seed, "draws": out})

    # Every size 1..100 on a fresh generator: the scalar (<16) path, exact blocks, and re-done tails.
    for seed in (0, 42, 2**32 + 7):
        for n in range(1, 101):
            add(seed, [((n,), "f32")], f"seed{seed}-n{n}")
    # More seeds on a few telling sizes.
    for seed in (1, 7, 123, 1234, 31337, 2**31 - 1, 2**63 + 5, 2**64 - 1):
        for n in (1, 2, 15, 16, 17, 31, 33, 64):
            add(seed, [((n,), "f32")], f"seed{seed}-n{n}")
    # Latent-sized draws (NCHW, as diffusers draws them), and a large size not divisible by 16.
    add(0, [((1, 4, 64, 64), "f32")], "latent-1x4x64x64")
    add(1234, [((2, 4, 32, 48), "f32")], "latent-2x4x32x48")
    add(99, [((4099,), "f32")], "n4099")
    # Double path: scalar (<16, with the cached second normal) and block path.
    for n in list(range(1, 40)) + [100]:
        add(5, [((n,), "f64")], f"f64-n{n}")
    # Consecutive draws on one generator, mixing the paths so that the cached double normal and the
    # block tails carry across calls.
    add(2024, [((3,), "f32"), ((20,), "f32"), ((1,), "f32"), ((17,), "f32"), ((5,), "f64"),
               ((16,), "f32"), ((1,), "f32"), ((2, 3), "f32"), ((1, 4, 8, 8), "f32"), ((7,), "f64"),
               ((33,), "f64"), ((1,), "f32")], "consecutive-mixed")
    add(7, [((1, 4, 8, 8), "f32")] * 4, "consecutive-latents")

    np.concatenate(f32).tofile(os.path.join(OUT, "values_f32.bin"))
    np.concatenate(f64).tofile(os.path.join(OUT, "values_f64.bin"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, indent=0)
    print(f"{len(cases)} cases, {n32} float32 and {n64} float64 values", file=sys.stderr)


if __name__ == "__main__":
    main()
