#!/usr/bin/env python3
"""Writes Tests/StableDiffusionTests/Fixtures/scheduler_switch/: `--scheduler NAME` against diffusers' from_config.

What a user of diffusers does to switch schedulers is
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
where pipe.scheduler was itself made by from_config from the folder's scheduler_config.json. How that
config reads depends on the keys it carries, so the cases cover every way a scheduler config reaches the
engine:

* "saved": the file diffusers 0.42 writes with save_pretrained after loading a reference config into the
  SAVED class (every key explicit; 0.42 no longer writes `_use_default_values` into files).
* "with_defaults": the same config as diffusers holds it in memory (`dict(pipe.scheduler.config)`), which
  is also what diffusers ~0.22-0.23 wrote into files: `_use_default_values` lists the keys that were never
  set, and from_config drops them, so the NEW class falls back to its own defaults.

For 4 reference configs (SD 1.5, SD 2.1 v-prediction with timestep_spacing set explicitly, x4 upscaler,
SD 1.5 inpainting) x 12 saved classes (the 11 scheduler classes + DPM++ 2M Karras) x 2 forms x the 12 CLI
names, the switched scheduler's timesteps, sigmas (where it has them), init_noise_sigma and a 5-step
trajectory of a fake model are recorded.

"nulls": every __init__ parameter of every class set to JSON null, to pin down what an explicit null
means (None in diffusers): either an error somewhere in from_config/set_timesteps/step, or a result.

Samples are NHWC little-endian float32 in trajectories.bin at the offsets in cases.json.
Run: ~/.sd-ref-venv/bin/python Scripts/reference/gen_scheduler_switch_fixtures.py
"""
import inspect
import json
import math
import os
import sys

import numpy as np
import torch
import diffusers

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "..", "..", "shared", "reference-configs")
OUT = os.path.join(HERE, "..", "..", "Tests", "StableDiffusionTests", "Fixtures", "scheduler_switch")
SHAPE = (1, 4, 4, 4)  # NCHW
STEPS = 5

CLASSES = ["PNDMScheduler", "DDIMScheduler", "DDPMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
           "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler",
           "UniPCMultistepScheduler", "LCMScheduler", "TCDScheduler"]
DPM_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
# The CLI names and what each means in diffusers: a class and from_config keyword arguments.
CLI = {
    "pndm": ("PNDMScheduler", {}), "ddim": ("DDIMScheduler", {}), "ddpm": ("DDPMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}), "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}), "heun": ("HeunDiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", dict(DPM_2M, use_karras_sigmas=False)),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler", dict(DPM_2M, use_karras_sigmas=True)),
    "unipc": ("UniPCMultistepScheduler", {}), "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}
# The saved classes: the 9 classes, plus DPM++ 2M Karras (a saved DPM config with Karras sigmas on).
SAVED = [(c, {}) for c in CLASSES] + [("DPMSolverMultistepScheduler", dict(DPM_2M, use_karras_sigmas=True))]


def load(rel):
    with open(os.path.join(CONFIGS, rel)) as f:
        return json.load(f)


def bases():
    sd21 = load("stabilityai-stable-diffusion-2-1/scheduler/scheduler_config.json")
    sd21["timestep_spacing"] = "trailing"  # explicit: kept by every class
    return {
        "sd15": load("runwayml-stable-diffusion-v1-5/scheduler/scheduler_config.json"),
        "sd21v": sd21,
        "x4": load("stabilityai-stable-diffusion-x4-upscaler/scheduler/scheduler_config.json"),
        "inpaint": load("runwayml-stable-diffusion-inpainting/scheduler/scheduler_config.json"),
    }


def model(x, t):
    return x * 0.95 + (x * x - 1.0) / (x * x + 1.0) * (0.05 * float(t) / 1000.0)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().reshape(-1).numpy().astype("<f4")


def jsonable(config):
    """A scheduler config as JSON would hold it (tuples -> lists, numpy -> lists)."""
    return json.loads(json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items()},
                                 default=lambda o: o.tolist()))


def run(sched):
    """set_timesteps + a short trajectory; returns a record (without offsets) and the samples."""
    sched.set_timesteps(STEPS)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    takes_gen = "generator" in inspect.signature(sched.step).parameters
    g = torch.Generator().manual_seed(7) if takes_gen else None
    sample = x0 * sched.init_noise_sigma
    traj = []
    for t in sched.timesteps:
        inp = sched.scale_model_input(sample, t)
        kwargs = {"generator": g} if g is not None else {}
        sample = sched.step(model(inp, t), t, sample, **kwargs).prev_sample
        traj.append(sample)
    rec = {"timesteps": [float(t) for t in sched.timesteps.tolist()], "init_noise_sigma": float(sched.init_noise_sigma),
           "generator": 7 if takes_gen else None}
    sig = getattr(sched, "sigmas", None)
    if sig is not None:
        rec["sigmas"] = [float(s) for s in torch.as_tensor(sig).tolist()]
    finite = all(torch.isfinite(s).all() for s in traj)
    return rec, [x0] + traj, finite


class Blob:
    def __init__(self):
        self.parts, self.off = [], 0

    def add(self, tensors):
        start = self.off
        for t in tensors:
            self.parts.append(nhwc(t))
            self.off += t.numel()
        return start


def switch_cases(blob):
    records, skipped = [], 0
    for base_name, base in bases().items():
        for saved_cls, saved_kwargs in SAVED:
            saved = getattr(diffusers, saved_cls).from_config(base, **saved_kwargs)
            tmp = os.path.join("/tmp", "sd-switch-fixture")
            saved.save_pretrained(tmp)
            with open(os.path.join(tmp, "scheduler_config.json")) as f:
                forms = {"saved": json.load(f)}
            in_memory = jsonable(saved.config)
            forms["with_defaults"] = in_memory
            label = saved_cls + ("-karras" if saved_kwargs.get("use_karras_sigmas") else "")
            for form, config in forms.items():
                for cli, (cls, kwargs) in CLI.items():
                    sched = getattr(diffusers, cls).from_config(config, **kwargs)
                    rec, samples, finite = run(sched)
                    if not finite:  # diffusers itself produces NaN/inf here: nothing to compare against
                        skipped += 1
                        continue
                    rec.update({"name": f"{base_name}/{label}/{form}/{cli}", "config": config, "cli": cli,
                                "resolved_class": cls, "samples": blob.add(samples)})
                    records.append(rec)
    return records, skipped


def null_cases(blob):
    """Each __init__ parameter of each class set to null on top of the SD 1.5 config."""
    base = bases()["sd15"]
    records = []
    for cls in CLASSES:
        klass = getattr(diffusers, cls)
        params = [p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")]
        for p in params:
            config = dict(base, **{"_class_name": cls, p: None})
            rec = {"name": f"null/{cls}/{p}", "config": config, "key": p}
            try:
                sched = klass.from_config(config)
                out, samples, finite = run(sched)
                if not finite:
                    rec["error"] = "non-finite result"
                else:
                    rec.update(out)
                    rec["samples"] = blob.add(samples)
            except Exception as e:  # what diffusers does with None here: fail (somewhere)
                rec["error"] = f"{type(e).__name__}: {e}"[:200]
            records.append(rec)
    return records


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    blob = Blob()
    switches, skipped = switch_cases(blob)
    nulls = null_cases(blob)
    np.concatenate(blob.parts).tofile(os.path.join(OUT, "trajectories.bin"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "shape_nhwc": [SHAPE[0], SHAPE[2], SHAPE[3], SHAPE[1]],
                   "steps": STEPS, "switches": switches, "nulls": nulls}, f, separators=(",", ":"))
    errors = sum(1 for r in nulls if "error" in r)
    print(f"{len(switches)} switch cases ({skipped} non-finite in diffusers, left out), "
          f"{len(nulls)} null cases ({errors} errors in diffusers), {blob.off} floats", file=sys.stderr)


if __name__ == "__main__":
    main()
