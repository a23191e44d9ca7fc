"""Whole txt2img pipeline, engine against engine: each run is one fresh process that loads the SAME random-weights
diffusers folder (Scripts/bench/make_sd15_folder.py) and generates one image; the table has the whole
process's wall time (min and median over --runs processes), the seconds per denoising step, the load time,
the process's CPU time (user + system, median: on a busy machine wall time inflates and this much less; spinning
thread pools count in it) and the peak resident memory (the child's ru_maxrss, from wait4).

    python3 Scripts/bench/whole_pipeline.py [--recipe sd15|lcm|turbo] [--runs 3] [--size 512] [--steps N]
        [--engines sd-fp32 sd-bf16 sd-bf16-cached torch-fp32 ov-f32 ov-bf16] [--threads N] [--json FILE]

Recipes (same prompt, seed 0, one image):
  sd15        SD 1.5 folder (sd15-random), Euler, 20 steps, guidance 7.5, the full VAE
  lcm         SD 1.5 folder, LCMScheduler, 4 steps, guidance 1 (no unconditional batch), the full VAE: what an
              LCM-distilled or LCM-LoRA-fused SD 1.5 model costs
  turbo       SD-Turbo folder (sd-turbo-random: SD 2.1 base, Euler "trailing"), 1 step, guidance 0, TAESD
              (taesd-random) for the decode: sd --vae, diffusers' AutoencoderTiny, and for OpenVINO the TAESD
              decoder converted to IR (taesd-random-ov; optimum-intel does not export AutoencoderTiny) decoding
              the pipeline's latents

Engines:
  sd-fp32     .build/release/sd txt2img                               (all cores: its OpenMP pool, OMP_NUM_THREADS)
  sd-bf16     the same with --precision bf16 (skipped when this sd has no --precision)
  sd-bf16-cached  sd-bf16 with --weight-cache: the weights already converted and laid out by a first,
              untimed run (its time is in the notes), as OpenVINO's CACHE_DIR keeps compiled models
  torch-fp32  diffusers' StableDiffusionPipeline + the recipe's scheduler, torch.set_num_threads(N)
              (--torch-python, the venv of Scripts/reference/requirements.txt)
  ov-f32      optimum-intel's OVStableDiffusionPipeline on the OpenVINO export (--ov-model), reshaped to the
  ov-bf16     static size and compiled with INFERENCE_PRECISION_HINT f32 / bf16, INFERENCE_NUM_THREADS N,
              NUM_STREAMS 1 (--ov-python, the venv of Scripts/bench/requirements-openvino.txt)

Seconds per step: the mean of steps 2..N (step 1 carries one-time costs in every engine), from the denoising
callback's clock in the Python engines and from the arrival times of sd's "step i/N" progress lines. The
load column is the engine's own: sd's --verbose "loaded ... in X s", from_pretrained (+ reshape and compile)
in Python. Validate at a small size first: --size 256 --steps 2 --runs 1.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROMPT = "a photograph of an astronaut riding a horse"
SEED = 0
CACHE = os.path.expanduser("~/.cache/sd-bench")
# recipe: folder, steps, guidance, scheduler (sd's name, diffusers' class), timestep_spacing override, TAESD
RECIPES = {
    "sd15": dict(folder="sd15-random", steps=20, guidance=7.5, scheduler=("euler", "EulerDiscreteScheduler"),
                 spacing=None, taesd=False),
    "lcm": dict(folder="sd15-random", steps=4, guidance=1.0, scheduler=("lcm", "LCMScheduler"), spacing=None,
                taesd=False),
    "turbo": dict(folder="sd-turbo-random", steps=1, guidance=0.0, scheduler=("euler", "EulerDiscreteScheduler"),
                  spacing="trailing", taesd=True),
}
ENGINES = ["sd-fp32", "sd-bf16", "sd-bf16-cached", "torch-fp32", "ov-f32", "ov-bf16"]
STEP_LINE = re.compile(r"step (\d+)/(\d+)")
LOADED_LINE = re.compile(r"loaded .* in ([0-9.]+) s")


# ---------------------------------------------------------------- children (run inside the engines' venvs)

def child_main(args):
    """One generation in this process; prints one JSON line: load_s, step_times, decode_s, versions."""
    import diffusers
    import torch

    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    guidance = recipe["guidance"]
    start = time.perf_counter()
    info = {}
    ov_taesd = None
    if args.child == "torch":
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(args.model, torch_dtype=torch.float32, safety_checker=None,
                                                       requires_safety_checker=False)
        if recipe["taesd"]:
            pipe.vae = diffusers.AutoencoderTiny.from_pretrained(args.taesd, torch_dtype=torch.float32)
        info["versions"] = f"torch {torch.__version__}, diffusers {diffusers.__version__}"
    else:
        import openvino
        from optimum.intel import OVStableDiffusionPipeline
        from optimum.intel.version import __version__ as optimum_intel_version

        ov_config = {"INFERENCE_PRECISION_HINT": args.precision, "INFERENCE_NUM_THREADS": str(args.threads),
                     "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        pipe = OVStableDiffusionPipeline.from_pretrained(args.model, ov_config=ov_config, compile=False)
        if not args.ov_dynamic:
            pipe.reshape(batch_size=1, height=args.size, width=args.size, num_images_per_prompt=1)
            if guidance <= 1:  # optimum-intel's reshape assumes the guided batch of 2; these recipes run 1
                unet = pipe.unet.model
                shapes = {i: i.get_partial_shape() for i in unet.inputs}
                for i, shape in shapes.items():
                    if i.get_any_name() in ("sample", "encoder_hidden_states") and shape.rank.get_length() > 0:
                        shape[0] = 1
                unet.reshape(shapes)
        pipe.compile()
        if recipe["taesd"]:
            core = openvino.Core()
            ov_taesd = core.compile_model(os.path.join(args.taesd + "-ov", "vae_decoder", "openvino_model.xml"), "CPU",
                                          ov_config)
        try:  # what the CPU plugin made of the hint (the compiled UNet's property)
            hint = pipe.unet.request.get_property("INFERENCE_PRECISION_HINT")
            info["unet_precision"] = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        except Exception:  # noqa: BLE001 - a property this plugin version may not report
            info["unet_precision"] = None
        info["versions"] = f"openvino {openvino.__version__.split('-')[0]}, optimum-intel {optimum_intel_version}"
    scheduler_cls = getattr(diffusers, recipe["scheduler"][1])
    overrides = {"timestep_spacing": recipe["spacing"]} if recipe["spacing"] else {}
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config, **overrides)
    pipe.set_progress_bar_config(disable=True)
    info["load_s"] = time.perf_counter() - start

    stamps = []

    def on_step(_pipe, _i, _t, kwargs):
        stamps.append(time.perf_counter())
        return kwargs

    call = time.perf_counter()
    images = pipe(PROMPT, num_inference_steps=args.steps, height=args.size, width=args.size,
                  guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(SEED),
                  output_type="latent" if ov_taesd is not None else "np", callback_on_step_end=on_step).images
    if ov_taesd is not None:  # the TAESD decode (scaling factor 1), then the pipeline's own postprocessing
        picture = torch.from_numpy(ov_taesd(images.numpy() if hasattr(images, "numpy") else images)[0])
        images = pipe.image_processor.postprocess(picture, output_type="np")
    end = time.perf_counter()
    assert images[0].shape[:2] == (args.size, args.size), images[0].shape
    info["generate_s"] = end - call
    info["first_step_s"] = stamps[0] - call if stamps else None
    info["s_per_step"] = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else info["first_step_s"]
    info["decode_s"] = end - stamps[-1] if stamps else None
    info["steps_seen"] = len(stamps)
    print(json.dumps(info), flush=True)


# ---------------------------------------------------------------- parent

def cpu_description():
    fields, flags = {}, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    continue
                k, v = (s.strip() for s in line.split(":", 1))
                if k == "flags":
                    flags = set(v.split())
                fields.setdefault(k, v)
                if k == "flags":
                    break
    except OSError:
        return "unknown CPU"
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags]
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}; "
            f"{' '.join(isa) or 'no AVX2'}), {os.cpu_count()} logical CPUs")


def run_process(cmd, env):
    """Runs cmd; returns (wall s, CPU s, peak RSS bytes, rc, stdout, stderr lines with arrival times)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_chunks = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()))
    reader.start()
    err = []
    for line in proc.stderr:
        err.append((time.perf_counter(), line.rstrip("\n")))
    reader.join()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, proc.returncode, "".join(out_chunks), err


def sd_has_precision(sd):
    try:
        help_text = subprocess.run([sd, "txt2img", "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--precision" in help_text


def engine_command(engine, args, tmp):
    """The command of one run, or a string saying why the engine is skipped."""
    if engine.startswith("sd-"):
        if not os.access(args.sd, os.X_OK):
            return f"skipped: no {args.sd} (swift build -c release --product sd)"
        recipe = RECIPES[args.recipe]
        cmd = [args.sd, "txt2img", "--model", args.model, "--prompt", PROMPT, "--seed", str(SEED), "--steps",
               str(args.steps), "--height", str(args.size), "--width", str(args.size), "--guidance-scale",
               str(recipe["guidance"]), "--scheduler", recipe["scheduler"][0], "--output",
               os.path.join(tmp, f"{engine}.png"), "--verbose"]
        if recipe["spacing"]:
            cmd += ["--timestep-spacing", recipe["spacing"]]
        if recipe["taesd"]:
            cmd += ["--vae", args.taesd]
        if engine.startswith("sd-bf16"):
            if not sd_has_precision(args.sd):
                return "skipped: this sd has no --precision"
            cmd += ["--precision", "bf16"]
        if engine == "sd-bf16-cached":  # the packed weights a first, untimed run wrote (PackedWeightCache)
            cmd += ["--weight-cache", os.path.join(tmp, "weight-cache")]
        return cmd
    python = args.torch_python if engine == "torch-fp32" else args.ov_python
    model = args.model if engine == "torch-fp32" else args.ov_model
    if not os.access(python, os.X_OK):
        return f"skipped: no {python}"
    arch = "--arch sd-turbo " if args.recipe == "turbo" else ""
    if not os.path.isdir(model):
        return f"skipped: no {model} (Scripts/bench/make_sd15_folder.py {arch}{'--openvino' if engine.startswith('ov') else ''})"
    if RECIPES[args.recipe]["taesd"] and engine.startswith("ov") and not os.path.isdir(args.taesd + "-ov"):
        return f"skipped: no {args.taesd}-ov (Scripts/bench/make_sd15_folder.py {arch}--openvino --taesd)"
    cmd = [python, os.path.abspath(__file__), "--child", "torch" if engine == "torch-fp32" else "openvino",
           "--model", model, "--size", str(args.size), "--steps", str(args.steps), "--threads", str(args.threads),
           "--recipe", args.recipe, "--taesd", args.taesd]
    if engine.startswith("ov-"):
        cmd += ["--precision", engine[3:]]
        if args.ov_dynamic:
            cmd.append("--ov-dynamic")
    return cmd


def parse_run(engine, stdout, err):
    """The engine's own numbers: load_s, s_per_step, first_step_s (None where it reports nothing)."""
    if not engine.startswith("sd-"):
        lines = [l for l in stdout.strip().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else {}
    info = {}
    steps = [(t, int(m.group(1)), int(m.group(2))) for t, l in err if (m := STEP_LINE.search(l))]
    first = [t for t, i, _ in steps if i == 1]
    last = [t for t, i, n in steps if i == n]
    if first and last and steps[-1][2] > 1:
        info["s_per_step"] = (last[-1] - first[0]) / (steps[-1][2] - 1)
    for _, l in err:
        if m := LOADED_LINE.search(l):
            info["load_s"] = float(m.group(1))
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="sd15")
    ap.add_argument("--runs", type=int, default=3, help="processes per engine")
    ap.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    ap.add_argument("--size", type=int, default=512, help="height and width")
    ap.add_argument("--steps", type=int, help="default: the recipe's")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--model", help="default: the recipe's folder in ~/.cache/sd-bench")
    ap.add_argument("--ov-model", help="default: the recipe's folder + -ov")
    ap.add_argument("--taesd", default=os.path.join(CACHE, "taesd-random"), help="the turbo recipe's AutoencoderTiny")
    ap.add_argument("--sd", default=os.path.join(ROOT, ".build", "release", "sd"))
    ap.add_argument("--torch-python", default=os.path.expanduser("~/.sd-ref-venv/bin/python"))
    ap.add_argument("--ov-python", default=os.path.expanduser("~/.sd-ov-venv/bin/python"))
    ap.add_argument("--ov-dynamic", action="store_true", help="keep OpenVINO's dynamic shapes (no reshape)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    # Internal: one generation inside an engine's venv.
    ap.add_argument("--child", choices=["torch", "openvino"], help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="f32", help=argparse.SUPPRESS)
    args = ap.parse_args()
    recipe = RECIPES[args.recipe]
    args.steps = args.steps or recipe["steps"]
    args.model = args.model or os.path.join(CACHE, recipe["folder"])
    args.ov_model = args.ov_model or args.model.rstrip("/") + "-ov"
    if args.child:
        return child_main(args)
    if args.size % 8 or args.size <= 0 or args.steps < 1 or args.runs < 1:
        ap.error("--size must be a positive multiple of 8, --steps and --runs >= 1")

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    cpu = cpu_description()
    what = (f"recipe {args.recipe}: txt2img {args.size}x{args.size}, {args.steps} {recipe['scheduler'][1]} step(s)"
            f"{', ' + recipe['spacing'] + ' timesteps' if recipe['spacing'] else ''}, guidance {recipe['guidance']}"
            f"{', TAESD decode' if recipe['taesd'] else ''}, seed {SEED}")
    print(f"# {cpu}; {args.threads} threads; {what}; {args.runs} run(s) per engine, each a fresh process",
          file=sys.stderr, flush=True)
    rows = []
    tmp = tempfile.mkdtemp(prefix="sd-whole-")
    try:
        for engine in args.engines:
            row = {"engine": engine, "runs": []}
            rows.append(row)
            cmd = engine_command(engine, args, tmp)
            if isinstance(cmd, str):
                row["note"] = cmd
                print(f"{engine}: {cmd}", file=sys.stderr, flush=True)
                continue
            print("$ " + shlex.join(cmd), file=sys.stderr, flush=True)
            if engine == "sd-bf16-cached":
                wall, _, _, rc, _, _ = run_process(cmd, env)
                row["note"] = f"first run, writing the cache: {wall:.1f} s" if rc == 0 else f"first run failed (exit {rc})"
                print(f"{engine}: {row['note']}", file=sys.stderr, flush=True)
            for i in range(args.runs):
                wall, cpu_s, peak, rc, stdout, err = run_process(cmd, env)
                if rc != 0:
                    tail = " | ".join(l for _, l in err[-5:])
                    row["note"] = f"failed (exit {rc}): {tail}"
                    print(f"{engine}: {row['note']}", file=sys.stderr, flush=True)
                    break
                run = {"wall_s": wall, "cpu_s": cpu_s, "peak_rss_bytes": peak, **parse_run(engine, stdout, err)}
                row["runs"].append(run)
                sps = run.get("s_per_step")
                print(f"{engine} run {i + 1}: {wall:.1f} s ({cpu_s:.0f} CPU s), {peak / 2**20:.0f} MiB"
                      + (f", {sps:.3f} s/step" if sps else ""), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"CPU: {cpu}")
    print(f"{what}, {args.threads} threads, whole process per run (load + generate + exit)")
    print(f"{'engine':10s} {'precision':9s} {'runs':>4s} {'min s':>8s} {'median s':>9s} {'s/step':>7s} "
          f"{'load s':>7s} {'CPU s':>7s} {'peak RSS MiB':>12s}  notes")
    for row in rows:
        name, prec = row["engine"].split("-", 1)
        runs = row["runs"]
        label = {"sd": "sd", "torch": "diffusers", "ov": "openvino"}[name]
        if not runs:
            print(f"{label:10s} {prec:9s} {0:4d} {'-':>8s} {'-':>9s} {'-':>7s} {'-':>7s} {'-':>7s} {'-':>12s}  {row.get('note', '')}")
            continue
        walls = [r["wall_s"] for r in runs]
        med = lambda key: statistics.median(v) if (v := [r[key] for r in runs if r.get(key) is not None]) else None
        fmt = lambda v, w, p: f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}s}"
        notes = [row.get("note", "")] + [f"{k} {v}" for k, v in (("versions", runs[-1].get("versions")),
                                                                   ("unet", runs[-1].get("unet_precision"))) if v]
        print(f"{label:10s} {prec:9s} {len(runs):4d} {min(walls):8.1f} {statistics.median(walls):9.1f} "
              f"{fmt(med('s_per_step'), 7, 3)} {fmt(med('load_s'), 7, 1)} {fmt(med('cpu_s'), 7, 0)} "
              f"{max(r['peak_rss_bytes'] for r in runs) / 2**20:12.0f}  {'; '.join(n for n in notes if n)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu, "threads": args.threads, "recipe": args.recipe, "size": args.size, "steps": args.steps,
                       "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    sys.exit(main())
