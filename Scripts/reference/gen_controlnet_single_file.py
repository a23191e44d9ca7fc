"""A tiny ControlNet single file in the original layout (cldm.ControlNet names), converted from
Models/tiny-controlnet-sd1 by Scripts/reference/original_layout.py (independent of diffusers' converter), and proven
with diffusers' ControlNetModel.from_single_file (config= the tiny folder), which must give every weight unchanged.

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_controlnet_single_file.py

Writes Tests/StableDiffusionTests/Fixtures/controlnet/single/: tiny_controlnet.safetensors (v1.1 style, no prefix) and
tiny_controlnet_prefixed.pth (torch.save, ControlNet 1.0's "control_model." prefix).
"""
import json
import os
import sys

import torch
from diffusers import ControlNetModel
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from original_layout import controlnet_to_original  # noqa: E402

SRC = "Models/tiny-controlnet-sd1"
OUT = "Tests/StableDiffusionTests/Fixtures/controlnet/single"
os.makedirs(OUT, exist_ok=True)
net = ControlNetModel.from_pretrained(SRC)
cfg = json.load(open(os.path.join(SRC, "config.json")))
state = net.state_dict()
plain = controlnet_to_original(state, cfg)
save_file({k: v.contiguous() for k, v in plain.items()}, os.path.join(OUT, "tiny_controlnet.safetensors"))
prefixed = controlnet_to_original(state, cfg, prefix="control_model.")
torch.save({"state_dict": prefixed}, os.path.join(OUT, "tiny_controlnet_prefixed.pth"))

for name in ("tiny_controlnet.safetensors", "tiny_controlnet_prefixed.pth"):
    loaded = ControlNetModel.from_single_file(os.path.join(OUT, name), config=SRC)
    got = loaded.state_dict()
    assert set(got) == set(state), (name, set(state) ^ set(got))
    worst = max((got[k] - state[k]).abs().max().item() for k in state)
    print(name, len(plain), "tensors; diffusers from_single_file max difference from the folder:", worst)
    assert worst == 0
