#!/usr/bin/env python3
"""Writes Tests/StableDiffusionTests/Fixtures/schedulers/: diffusers scheduler trajectories for the Swift tests.

Each case builds a scheduler with `Class.from_config(config)`, calls set_timesteps(n), starts from a
seeded sample times init_noise_sigma, and runs the pipeline loop with a deterministic fake model
    eps(x, t) = 0.95 * x + (x * x - 1) / (x * x + 1) * (0.05 * t / 1000)
(a bounded, denoiser-like stand-in, so that every scheduler's trajectory stays finite)
(x being scale_model_input's output). Ancestral/noisy schedulers get seeded generators. DDPM cases with
learned variances use model_learned, which also predicts the variance channels ("learned_variance").
Cases with "begin_index" start img2img-style: set_begin_index, add_noise at that timestep, remaining steps.
Cases that are NaN in diffusers itself are not generated; see the comments in cases().
Samples are stored NHWC (the engine's layout; noise is drawn NCHW as torch does, then permuted), as
little-endian float32 in trajectories.bin at the offsets recorded in cases.json.
Run: /root/.sd-ref-venv/bin/python Scripts/reference/gen_scheduler_fixtures.py
"""
import json
import os
import sys

import numpy as np
import torch
import diffusers

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "StableDiffusionTests", "Fixtures", "schedulers")

# Stable Diffusion 1.x's scheduler_config.json: every case starts from it (as `--scheduler` does).
SD15 = {
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
    "clip_sample": False,
}
SHAPE = (2, 4, 4, 4)  # NCHW, as torch holds latents

TRAINED = [float(b) for b in np.linspace(0.0001, 0.03, 100) ** 1.1]


def model(x, t):
    return x * 0.95 + (x * x - 1.0) / (x * x + 1.0) * (0.05 * float(t) / 1000.0)


def model_learned(x, t):
    """For variance_type learned/learned_range: [eps, v] along channels, with v in [0, 0.5)."""
    return torch.cat([model(x, t), x * x / (x * x + 1.0) * 0.5], dim=1)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().reshape(-1).numpy().astype("<f4")


def cases():
    steps = (1, 7, 20)
    out = []

    def add(cls, overrides, ns=steps, gen=None, name="", begin=None):
        for n in ns:
            out.append((cls, overrides, n, gen, f"{cls}-{name or 'base'}-{n}", begin))

    P = "PNDMScheduler"
    add(P, {})
    add(P, {"skip_prk_steps": False}, (4, 7, 20), name="prk")
    add(P, {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, (1, 7), name="v-trailing")
    add(P, {"timestep_spacing": "linspace", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, (7,), name="linspace-linear")
    add(P, {"beta_schedule": "squaredcos_cap_v2", "set_alpha_to_one": True, "steps_offset": 0}, (7,), name="cos-alpha1")

    D = "DDIMScheduler"
    add(D, {})
    add(D, {"timestep_spacing": "trailing", "rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "set_alpha_to_one": True}, (1, 7), name="zsnr-v-trailing")
    add(D, {"prediction_type": "sample", "clip_sample": True, "clip_sample_range": 1.5}, (7,), name="sample-clip")
    add(D, {"thresholding": True, "sample_max_value": 2.0, "dynamic_thresholding_ratio": 0.9}, (7,), name="thresholding")
    add(D, {"timestep_spacing": "linspace", "steps_offset": 0}, (7,), name="linspace")
    add(D, {"trained_betas": TRAINED, "num_train_timesteps": 100}, (7,), name="trained-betas")

    E = "EulerDiscreteScheduler"
    add(E, {})
    add(E, {"timestep_spacing": "leading"}, (1, 7), name="leading")
    add(E, {"timestep_spacing": "trailing", "final_sigmas_type": "sigma_min"}, (7,), name="trailing-sigmamin")
    add(E, {"use_karras_sigmas": True}, (1, 7, 20), name="karras")
    add(E, {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, (7,), name="v-zsnr")
    add(E, {"use_exponential_sigmas": True, "beta_schedule": "squaredcos_cap_v2"}, (7,), name="exp-cos")
    add(E, {"interpolation_type": "log_linear"}, (7,), name="loglinear")

    A = "EulerAncestralDiscreteScheduler"
    add(A, {}, gen=11)
    add(A, {"timestep_spacing": "leading"}, (7,), gen=12, name="leading")
    add(A, {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, (7,), gen=13, name="v-trailing")
    add(A, {}, (7,), gen=[21, 22], name="genlist")

    M = "DPMSolverMultistepScheduler"
    add(M, {})
    add(M, {"use_karras_sigmas": True}, name="karras")
    add(M, {"solver_order": 3}, (7,), name="order3")
    add(M, {"solver_order": 1}, (7,), name="order1")
    add(M, {"lower_order_final": False}, (7,), name="no-lower-final")
    add(M, {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, (7,), name="dpmsolver")
    add(M, {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, (7,), name="v-trailing")
    add(M, {"prediction_type": "sample", "thresholding": True}, (7,), name="sample-thresh")
    add(M, {"final_sigmas_type": "sigma_min", "timestep_spacing": "leading"}, (7,), name="sigmamin-leading")
    add(M, {"euler_at_final": True, "use_karras_sigmas": True}, (7,), name="euler-final")
    add(M, {"algorithm_type": "sde-dpmsolver++"}, (7,), gen=31, name="sde")
    add(M, {"solver_order": 3, "algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}, (20,), gen=32, name="sde-order3-heun")
    add(M, {"algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min"}, (5,), gen=33, name="sde-dpmsolver")
    add(M, {"solver_type": "heun"}, (1, 7), name="heun")
    add(M, {"algorithm_type": "dpmsolver", "solver_type": "heun", "final_sigmas_type": "sigma_min", "solver_order": 3, "lower_order_final": False}, (7,), name="dpmsolver-heun-order3")
    add(M, {"use_lu_lambdas": True}, (7,), name="lu")
    # (exponential sigmas on the cosine schedule repeat timestep 998, which breaks diffusers' own loop)
    add(M, {"use_exponential_sigmas": True}, (7,), name="exp")
    add(M, {"beta_schedule": "squaredcos_cap_v2", "lambda_min_clipped": -5.1}, (7,), name="cos-clipped")

    DD = "DDPMScheduler"
    add(DD, {}, gen=41)
    add(DD, {"variance_type": "fixed_small_log", "clip_sample": True}, (7,), gen=42, name="smalllog-clip")
    add(DD, {"variance_type": "fixed_large", "prediction_type": "v_prediction"}, (7,), gen=43, name="large-v")
    # fixed_large_log is left out: diffusers' step takes sqrt(log(beta)) < 0 there, so every noisy step is NaN
    # (the engine rejects it with an error naming variance_type).
    add(DD, {"prediction_type": "sample", "thresholding": True}, (7,), gen=44, name="sample-thresh")
    # Zero terminal SNR makes alpha_bar(999) = 0, which only v-prediction survives (epsilon divides by 0).
    add(DD, {"timestep_spacing": "trailing", "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}, (1, 7), gen=45, name="trailing-zsnr-v")
    add(DD, {"timestep_spacing": "linspace", "beta_schedule": "sigmoid", "clip_sample": False}, (7,), gen=46, name="linspace-sigmoid")
    # Learned variances: the fake model also predicts a variance channel block (see model_learned).
    add(DD, {"variance_type": "learned", "clip_sample": False}, (7,), gen=47, name="learned")
    add(DD, {"variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2"}, (1, 7), gen=48, name="learned-range")

    L = "LMSDiscreteScheduler"
    add(L, {})
    add(L, {"use_karras_sigmas": True}, (7,), name="karras")
    add(L, {"prediction_type": "v_prediction", "timestep_spacing": "leading"}, (7,), name="v-leading")
    add(L, {"use_exponential_sigmas": True, "timestep_spacing": "trailing"}, (7,), name="exp-trailing")
    add(L, {"prediction_type": "sample", "beta_schedule": "squaredcos_cap_v2"}, (4,), name="sample-cos")

    H = "HeunDiscreteScheduler"
    add(H, {})
    add(H, {"use_karras_sigmas": True}, (7,), name="karras")
    add(H, {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, (7,), name="v-trailing")
    add(H, {"prediction_type": "sample", "timestep_spacing": "leading", "clip_sample": True}, (7,), name="sample-leading")
    # (with 5 steps, sigma 403 -> 52 amplifies float32 rounding, and torch's sqrt (MKL) is not always
    # correctly rounded: 1e-5 is then out of reach; 20 smaller steps keep the case well-conditioned)
    add(H, {"use_exponential_sigmas": True, "beta_schedule": "exp"}, (20,), name="exp-exp")

    U = "UniPCMultistepScheduler"
    add(U, {})
    # With a final sigma of zero, h is infinite at the last step: diffusers then returns NaN for bh1
    # (B(h) * 0), for predict_x0=False (sigma_t * expm1(inf)) and, without lower_order_final, for any
    # order > 1 (r_k = 0). These cases end at sigma_min instead, which keeps the same options covered.
    add(U, {"solver_order": 3, "solver_type": "bh1", "final_sigmas_type": "sigma_min"}, (7, 20), name="order3-bh1")
    add(U, {"predict_x0": False, "final_sigmas_type": "sigma_min"}, (7,), name="noise-pred")
    add(U, {"use_karras_sigmas": True}, (7,), name="karras")
    add(U, {"lower_order_final": False, "solver_order": 3, "final_sigmas_type": "sigma_min"}, (7,), name="no-lower-final")
    add(U, {"use_exponential_sigmas": True, "prediction_type": "sample"}, (7,), name="exp-sample")
    add(U, {"timestep_spacing": "leading", "rescale_betas_zero_snr": True, "prediction_type": "v_prediction", "solver_type": "midpoint"}, (5,), name="leading-zsnr-v")
    add(U, {"prediction_type": "v_prediction", "timestep_spacing": "trailing", "final_sigmas_type": "sigma_min"}, (7,), name="v-trailing")
    add(U, {"disable_corrector": [0], "thresholding": True}, (7,), name="nocorr-thresh")
    # img2img-style starts (strength 0.6 of 10 steps: t_start 4, times `order`): set_begin_index, add_noise
    # at the first remaining timestep, then the loop over the remaining timesteps, as the pipelines do.
    for cls, gen in ((P, None), (D, None), (E, None), (A, 51), (M, None), (DD, 52), (L, None), (H, None), (U, None)):
        add(cls, {}, (10,), gen=gen, name="img2img", begin=4)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    blob = []
    off = 0
    records = []
    for cls_name, overrides, n, gen, name, begin in cases():
        config = dict(SD15)
        config.update(overrides)
        config["_class_name"] = cls_name
        cls = getattr(diffusers, cls_name)
        sched = cls.from_config(config)
        sched.set_timesteps(n)
        timesteps = [float(t) for t in sched.timesteps.tolist()]
        sigma0 = float(sched.init_noise_sigma)
        x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(n))
        # add_noise before any step (begin index unset), one timestep per batch item.
        clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(100 + n))
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(200 + n))
        if begin is not None:
            begin *= sched.order
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(begin)
            nt = sched.timesteps[[begin, begin]]
        else:
            nt = sched.timesteps[[min(1, len(timesteps) - 1), 0]]
        noisy = sched.add_noise(clean, noise, nt)
        if gen is None:
            g = None
        elif isinstance(gen, list):
            g = [torch.Generator().manual_seed(s) for s in gen]
        else:
            g = torch.Generator().manual_seed(gen)
        sample = x0 * sched.init_noise_sigma if begin is None else noisy
        traj = []
        for t in sched.timesteps[begin or 0:]:
            inp = sched.scale_model_input(sample, t)
            learned = overrides.get("variance_type") in ("learned", "learned_range")
            eps = model_learned(inp, t) if learned else model(inp, t)
            kwargs = {"generator": g} if g is not None else {}
            sample = sched.step(eps, t, sample, **kwargs).prev_sample
            traj.append(sample)
        rec = {"name": name, "config": config, "steps": n, "timesteps": timesteps, "init_noise_sigma": sigma0,
               "order": sched.order, "generator": gen, "begin_index": begin,
               "learned_variance": overrides.get("variance_type") in ("learned", "learned_range"), "sample_seed": n, "noise_timesteps": [float(v) for v in nt.tolist()]}
        for key, t in (("clean", clean), ("noise", noise), ("noisy", noisy), ("initial", x0)):
            blob.append(nhwc(t)); rec[key] = off; off += t.numel()
        rec["trajectory"] = off
        for t in traj:
            blob.append(nhwc(t)); off += t.numel()
        records.append(rec)
    np.concatenate(blob).tofile(os.path.join(OUT, "trajectories.bin"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "shape_nhwc": [SHAPE[0], SHAPE[2], SHAPE[3], SHAPE[1]],
                   "cases": records}, f)
    print(f"{len(records)} cases, {off} floats", file=sys.stderr)


if __name__ == "__main__":
    main()
