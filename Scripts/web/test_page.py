#!/usr/bin/env python3
"""Browser test of the page `sd serve` serves at `/`, in Debian's Chromium driven by Selenium.

For each bundled tiny model it starts `sd serve` on a loopback port, opens the page, and checks, as a person
would use it: only the tabs the model can do are shown; a picture generated on each tab equals the CLI's
picture for the same parameters (pixels); a mask painted with pointer events inpaints; a run can be
cancelled; a 422 from the server is shown next to the field it names; the last seed can be reused; the
page works behind --api-auth and in a phone-width window. Screenshots of each tab go to $SD_WEB_ARTIFACTS
(default /tmp/sd-web-artifacts), not to the repository.

Run: Scripts/web/run_browser_test.sh (installs chromium, chromium-driver and selenium when missing).
"""
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SD = os.environ.get("SD_BIN", os.path.join(ROOT, ".build", "release", "sd"))
MODELS = os.path.join(ROOT, "Models")
ART = os.environ.get("SD_WEB_ARTIFACTS", "/tmp/sd-web-artifacts")
PROMPT = "a photograph of an astronaut riding a horse"
results = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name} {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model, extra=()):
        self.port = free_port()
        model_args = ["--model", model] if model else []
        self.proc = subprocess.Popen([SD, "serve", *model_args, "--host", "127.0.0.1", "--port", str(self.port), *extra],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(ART, f"serve-{self.port}.log"), "w"))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sd serve exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("sd serve did not start within 60 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def browser(width=1280, height=1000):
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def cli_image(args):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cli.png")
        subprocess.run([SD, *args, "--output", out], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        return Image.open(out).convert("RGB")


def page_images(driver):
    imgs = driver.find_elements(By.CSS_SELECTOR, "#gallery .card img")
    out = []
    for img in imgs:
        src = img.get_attribute("src")
        out.append(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    return out


def same_pixels(a, b):
    return a.size == b.size and a.tobytes() == b.tobytes()


def fill(driver, field, value):
    el = driver.find_element(By.ID, field)
    driver.execute_script("arguments[0].disabled = false; arguments[0].value = arguments[1];", el, str(value))


def set_seed(driver, seed):
    box = driver.find_element(By.ID, "seed-random")
    if box.is_selected():
        box.click()
    fill(driver, "seed", seed)


def open_tab(driver, tab):
    driver.find_element(By.ID, f"tab-{tab}").click()


def generate_and_wait(driver, count_before, timeout=120):
    driver.find_element(By.ID, "generate").click()
    WebDriverWait(driver, timeout).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card")) > count_before
        or "Failed" in d.find_element(By.ID, "status").text)
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "generate").is_enabled())


def upload(driver, field, path):
    driver.find_element(By.ID, field).send_keys(path)
    time.sleep(0.5)


def tabs_shown(driver):
    return [b.get_attribute("id")[4:] for b in driver.find_elements(By.CSS_SELECTOR, "#tabs button")]


def shot(driver, name):
    driver.save_screenshot(os.path.join(ART, f"{name}.png"))


def test_image(path, w, h):
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 7) % 256, (y * 5) % 256, 255 * (((x // 16) + (y // 16)) % 2))
    img.save(path)
    return path


def txt2img_against_cli(driver, model, seed, name, fields=(("width", 64), ("height", 64), ("steps", 4), ("cfg_scale", 7.5)),
                        cli_extra=()):
    """Fills the text-to-image form, generates, and returns (the page's pictures, `sd txt2img`'s for the same options)."""
    driver.find_element(By.ID, "prompt").send_keys(PROMPT)
    for f, v in fields:
        fill(driver, f, v)
    set_seed(driver, seed)
    shot(driver, name)
    generate_and_wait(driver, 0)
    flags = {"width": "--width", "height": "--height", "steps": "--steps", "cfg_scale": "--guidance-scale"}
    args = ["txt2img", "--model", model, "--prompt", PROMPT, "--seed", str(seed), *cli_extra]
    for f, v in fields:
        if f in flags:
            args += [flags[f], str(v)]
    return page_images(driver), cli_image(args)


def sd1_session(tmp):
    model = os.path.join(MODELS, "tiny-sd1")
    server = Server(model)
    driver = browser()
    try:
        driver.get(server.url + "/")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tabs button"))
        check("sd1 tabs", tabs_shown(driver) == ["txt2img", "img2img", "inpaint"], tabs_shown(driver))
        check("no ControlNet panel without --controlnet", not driver.find_elements(By.ID, "controlnet"))

        # Text to image, against the CLI.
        got, want = txt2img_against_cli(driver, model, 42, "txt2img")
        check("txt2img equals the CLI", len(got) == 1 and same_pixels(got[0], want))
        params = driver.find_element(By.CSS_SELECTOR, "#gallery .card .params").text
        check("gallery shows the PNG parameters", "Seed: 42" in params and PROMPT in params, params)
        shot(driver, "txt2img-result")

        # Reuse the last seed after a random one.
        driver.find_element(By.ID, "seed-random").click()
        generate_and_wait(driver, 1)
        status = driver.find_element(By.ID, "status").text
        driver.find_element(By.ID, "seed-reuse").click()
        seed = driver.find_element(By.ID, "seed").get_attribute("value")
        check("reuse last seed", seed and f"seed {seed}" in status, f"{seed!r} / {status!r}")

        # A 422 shown next to the field it names (a width that is not a multiple of 8).
        fill(driver, "width", 60)
        set_seed(driver, 1)
        driver.find_element(By.ID, "generate").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-error="width"]').text)
        msg = driver.find_element(By.CSS_SELECTOR, '[data-error="width"]').text
        check("422 next to its field", "8" in msg, msg)
        fill(driver, "width", 64)

        # Image to image.
        src = test_image(os.path.join(tmp, "input.png"), 96, 64)
        open_tab(driver, "img2img")
        upload(driver, "init_image", src)
        fill(driver, "denoising_strength", 0.6)
        fill(driver, "steps", 5)
        set_seed(driver, 3)
        shot(driver, "img2img")
        n = len(driver.find_elements(By.CSS_SELECTOR, "#gallery .card"))
        generate_and_wait(driver, n)
        want = cli_image(["img2img", "--model", model, "--prompt", PROMPT, "--image", src, "--strength", "0.6", "--steps", "5",
                          "--guidance-scale", "7.5", "--seed", "3"])
        check("img2img equals the CLI", same_pixels(page_images(driver)[0], want))

        # Inpainting: paint a stroke with pointer events, compare with the CLI given the same mask.
        open_tab(driver, "inpaint")
        upload(driver, "init_image", src)
        fill(driver, "width", 96)
        fill(driver, "height", 64)
        fill(driver, "denoising_strength", 1.0)
        canvas = driver.find_element(By.ID, "mask-paint")
        fill(driver, "brush", 12)
        chain = ActionChains(driver)
        chain.move_to_element_with_offset(canvas, -20, -5).click_and_hold().move_by_offset(30, 0).move_by_offset(10, 10).release().perform()
        mask_url = driver.execute_script("return paintedMask();")
        mask_path = os.path.join(tmp, "mask.png")
        with open(mask_path, "wb") as f:
            f.write(base64.b64decode(mask_url.split(",", 1)[1]))
        painted = Image.open(mask_path).convert("L")
        check("painted mask has a stroke", 0 < sum(1 for v in painted.tobytes() if v > 127) < painted.size[0] * painted.size[1])
        shot(driver, "inpaint")
        n = len(driver.find_elements(By.CSS_SELECTOR, "#gallery .card"))
        generate_and_wait(driver, n)
        want = cli_image(["inpaint", "--model", model, "--prompt", PROMPT, "--image", src, "--mask", mask_path, "--width", "96",
                          "--height", "64", "--strength", "1.0", "--steps", "5", "--guidance-scale", "7.5", "--seed", "3"])
        check("inpaint equals the CLI", same_pixels(page_images(driver)[0], want))

        # A long run of another client: ours waits in the queue, shows its place, and is dropped by Cancel
        # without stopping the other client's run.
        other = {}

        def other_client():
            body = json.dumps({"prompt": "x", "steps": 150, "width": 512, "height": 512, "seed": 1}).encode()
            req = urllib.request.Request(server.url + "/sdapi/v1/txt2img", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=300) as r:
                other["info"] = json.loads(json.loads(r.read())["info"])

        thread = threading.Thread(target=other_client)
        thread.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            with urllib.request.urlopen(server.url + "/sdapi/v1/progress", timeout=10) as r:
                if json.loads(r.read())["state"]["sampling_steps"] > 0:
                    break
            time.sleep(0.1)
        open_tab(driver, "txt2img")
        fill(driver, "width", 64)
        fill(driver, "height", 64)
        fill(driver, "steps", 4)
        driver.find_element(By.ID, "generate").click()
        WebDriverWait(driver, 30).until(lambda d: "In queue" in d.find_element(By.ID, "status").text)
        check("queued job shows its place", "1 ahead" in driver.find_element(By.ID, "status").text, driver.find_element(By.ID, "status").text)
        shot(driver, "queued")
        driver.find_element(By.ID, "cancel").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "generate").is_enabled())
        check("cancel a queued job", "Cancelled" in driver.find_element(By.ID, "status").text, driver.find_element(By.ID, "status").text)
        with urllib.request.urlopen(server.url + "/sdapi/v1/progress", timeout=10) as r:
            check("the other client's run goes on", json.loads(r.read())["state"]["sampling_steps"] == 150)
        urllib.request.urlopen(urllib.request.Request(server.url + "/sdapi/v1/interrupt", data=b"", method="POST"), timeout=10).close()
        thread.join(timeout=120)
        check("the other client got its answer", "info" in other and other["info"].get("interrupted") is True, str(other))

        # Our own long run: progress, a live preview, then Cancel interrupts it and shows the picture so far.
        fill(driver, "width", 512)
        fill(driver, "height", 512)
        fill(driver, "steps", 150)
        driver.find_element(By.ID, "generate").click()
        WebDriverWait(driver, 60).until(lambda d: not d.find_element(By.ID, "progress").get_attribute("hidden"))
        WebDriverWait(driver, 60).until(lambda d: (d.find_element(By.ID, "preview").get_attribute("src") or "").startswith("data:image/png"))
        check("live preview", driver.find_element(By.ID, "preview").is_displayed())
        shot(driver, "progress")
        n = len(driver.find_elements(By.CSS_SELECTOR, "#gallery .card"))
        driver.find_element(By.ID, "cancel").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "generate").is_enabled())
        check("interrupt", "Interrupted: 1 image" in driver.find_element(By.ID, "status").text, driver.find_element(By.ID, "status").text)
        check("the interrupted picture is shown", len(driver.find_elements(By.CSS_SELECTOR, "#gallery .card")) == n + 1)
        shot(driver, "interrupted")
        stopped, deadline = False, time.time() + 20
        while not stopped and time.time() < deadline:  # it stops at the end of the step under way
            with urllib.request.urlopen(server.url + "/sdapi/v1/progress", timeout=10) as r:
                stopped = json.loads(r.read())["state"]["sampling_steps"] == 0
            time.sleep(0.1)
        check("cancelled run stopped", stopped)
    finally:
        driver.quit()
        server.stop()

    # Phone width and Basic auth.
    server = Server(model, ["--api-auth", "user:secret"])
    driver = browser(390, 844)
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + "/"), timeout=10) as _:
            check("auth required", False, "page served without credentials")
    except urllib.error.HTTPError as e:
        check("auth required", e.code == 401 and "Basic" in (e.headers.get("WWW-Authenticate") or ""), str(e))
    try:
        driver.get(f"http://user:secret@127.0.0.1:{server.port}/")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tabs button"))
        wide = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        check("phone width fits", wide)
        shot(driver, "phone")
    finally:
        driver.quit()
        server.stop()


def single_tab_session(model_name, tab, tmp, cli_args, form):
    model = os.path.join(MODELS, model_name)
    server = Server(model)
    driver = browser()
    try:
        driver.get(server.url + "/")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tabs button"))
        check(f"{model_name} tabs", tab in tabs_shown(driver), tabs_shown(driver))
        open_tab(driver, tab)
        driver.find_element(By.ID, "prompt").send_keys(PROMPT)
        for f, v in form.items():
            if f == "init_image":
                upload(driver, f, v)
            elif f == "seed":
                set_seed(driver, v)
            else:
                fill(driver, f, v)
        shot(driver, tab)
        generate_and_wait(driver, 0)
        got = page_images(driver)
        want = cli_image([tab, "--model", model, "--prompt", PROMPT, *cli_args])
        check(f"{tab} equals the CLI", len(got) >= 1 and same_pixels(got[0], want))
        shot(driver, f"{tab}-result")
    finally:
        driver.quit()
        server.stop()


def sdxl_session(tmp):
    """An SDXL base served with --refiner: its tabs, its default size, the refiner field, and the ensemble's picture
    equal to `sd txt2img --refiner`."""
    base, refiner = os.path.join(MODELS, "tiny-sdxl"), os.path.join(MODELS, "tiny-sdxl-refiner")
    server = Server(base, ["--refiner", refiner])
    driver = browser()
    try:
        driver.get(server.url + "/")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tabs button"))
        caps = json.load(urllib.request.urlopen(server.url + "/sd/v1/capabilities"))
        check("SDXL tabs", tabs_shown(driver) == ["txt2img", "img2img", "inpaint"], tabs_shown(driver))
        check("SDXL named in the header", driver.find_element(By.ID, "model-name").text == "tiny-sdxl (SDXL)",
              driver.find_element(By.ID, "model-name").text)
        check("SDXL default size", driver.find_element(By.ID, "width").get_attribute("value") == str(caps["width"]), caps)
        check("refiner field on txt2img", driver.find_element(By.ID, "refiner").is_displayed()
              and driver.find_element(By.ID, "refiner-name").text == "tiny-sdxl-refiner")
        open_tab(driver, "inpaint")
        check("no refiner field on inpaint", not driver.find_element(By.ID, "refiner").is_displayed())
        open_tab(driver, "txt2img")
        got, want = txt2img_against_cli(driver, base, 21, "sdxl-refiner",
                                        (("width", 64), ("height", 64), ("steps", 6), ("cfg_scale", 5), ("refiner_switch_at", 0.5)),
                                        ["--refiner", refiner, "--refiner-switch", "0.5"])
        check("SDXL base + refiner equals the CLI", len(got) == 1 and same_pixels(got[0], want))
        plain = cli_image(["txt2img", "--model", base, "--prompt", PROMPT, "--width", "64", "--height", "64", "--steps", "6",
                           "--guidance-scale", "5", "--seed", "21"])
        check("the refiner changed the picture", len(got) == 1 and not same_pixels(got[0], plain))
    finally:
        driver.quit()
        server.stop()


def controlnet_session(tmp):
    """sd serve --controlnet: the panel, a txt2img with a control image equal to the CLI's, the preprocessor preview,
    a ControlNet error shown in the panel."""
    model = os.path.join(MODELS, "tiny-sd1")
    net = os.path.join(MODELS, "tiny-controlnet-sd1")
    edges = Image.new("RGB", (64, 64), 0)
    edges.paste((255, 255, 255), (8, 8, 56, 12))
    edges.paste((255, 255, 255), (20, 8, 24, 60))
    edges_path = os.path.join(tmp, "edges.png")
    edges.save(edges_path)
    server = Server(model, ["--controlnet", net])
    driver = browser()
    try:
        driver.get(server.url + "/")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tabs button"))
        check("ControlNet panel shown", driver.find_element(By.ID, "controlnet").is_displayed())
        driver.find_element(By.CSS_SELECTOR, "#cn-panel summary").click()
        options = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#cn_model option")]
        check("ControlNet models listed", options == ["tiny-controlnet-sd1"], options)
        driver.find_element(By.ID, "prompt").send_keys(PROMPT)
        for f, v in (("width", 64), ("height", 64), ("steps", 4), ("cfg_scale", 7.5), ("cn_weight", 0.8)):
            fill(driver, f, v)
        set_seed(driver, 9)
        driver.find_element(By.ID, "cn_enabled").click()
        # Enabled without a control image: the panel says so, nothing is sent.
        driver.find_element(By.ID, "generate").click()
        msg = driver.find_element(By.CSS_SELECTOR, '#controlnet [data-error="alwayson_scripts"]').text
        check("ControlNet needs a control image", "control image" in msg, msg)
        upload(driver, "cn_image", edges_path)
        shot(driver, "controlnet")
        generate_and_wait(driver, 0)
        got = page_images(driver)
        want = cli_image(["txt2img", "--model", model, "--prompt", PROMPT, "--width", "64", "--height", "64", "--steps", "4",
                          "--guidance-scale", "7.5", "--seed", "9", "--controlnet", net + ":0.8", "--control-image", edges_path])
        check("txt2img with ControlNet equals the CLI", len(got) == 1 and same_pixels(got[0], want))
        params = driver.find_element(By.CSS_SELECTOR, "#gallery .card .params").text
        check("gallery shows the ControlNet infotext", "ControlNet 0" in params, params)
        Select(driver.find_element(By.ID, "cn_module")).select_by_value("canny")
        check("canny thresholds shown", driver.find_element(By.ID, "cn_low").is_displayed())
        driver.find_element(By.ID, "cn_preview").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "cn_preview_img").is_displayed())
        src = driver.find_element(By.ID, "cn_preview_img").get_attribute("src")
        preview = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L")
        check("preprocessor preview is an edge map", set(preview.getdata()) <= {0, 255} and 255 in set(preview.getdata()))
    finally:
        driver.quit()
        server.stop()


class Postgres:
    """A throwaway PostgreSQL 15 on loopback (as the user postgres when run as root, which PostgreSQL refuses)."""
    BIN = "/usr/lib/postgresql/15/bin"

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "pg")
        self.port = free_port()
        root = os.getuid() == 0
        self.prefix = ["runuser", "-u", "postgres", "--"] if root else []
        if root:
            subprocess.run(["chown", "postgres", tmp], check=True)
        subprocess.run(self.prefix + [f"{self.BIN}/initdb", "-D", self.dir, "-U", "sd", "--auth=trust", "--no-sync"], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        subprocess.run(self.prefix + [f"{self.BIN}/pg_ctl", "-D", self.dir, "-o", f"-p {self.port} -k {tmp} -c listen_addresses=127.0.0.1",
                                      "-l", os.path.join(tmp, "pg.log"), "-w", "start"], check=True, stdout=subprocess.DEVNULL, timeout=120)
        self.url = f"postgres://sd@127.0.0.1:{self.port}/postgres"

    def stop(self):
        subprocess.run(self.prefix + [f"{self.BIN}/pg_ctl", "-D", self.dir, "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL, timeout=60)


def queue_session(tmp):
    """A front of a shared queue whose worker holds two models: the page's model menu, a picture from the second
    model equal to the CLI's."""
    if not os.path.exists(Postgres.BIN):
        check("model menu (PostgreSQL 15 missing)", False, Postgres.BIN)
        return
    # Its own folder under /tmp: PostgreSQL's user cannot enter the session's (root's, mode 0700) folder.
    qtmp = tempfile.mkdtemp(prefix="sd-page-pg-")
    pg = Postgres(qtmp)
    worker = None
    server = None
    driver = None
    try:
        subprocess.run([SD, "queue", "migrate", "--queue", pg.url], check=True, stdout=subprocess.DEVNULL, timeout=60)
        sd1, sd2 = os.path.join(MODELS, "tiny-sd1"), os.path.join(MODELS, "tiny-sd2")
        worker = subprocess.Popen([SD, "worker", "--queue", pg.url, "--model", sd1, "--model", sd2, "--name", "page-w1"],
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(ART, "worker.log"), "w"))
        server = Server("", ["--queue", pg.url])
        driver = browser()
        deadline = time.time() + 60
        menu = []
        while time.time() < deadline and len(menu) < 2:  # the front sees the worker's models at its next refresh
            driver.get(server.url + "/")
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tabs button"))
            menu = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#model-select option")]
            if len(menu) < 2:
                time.sleep(1)
        check("model menu lists the worker's models", sorted(menu) == ["tiny-sd1", "tiny-sd2"], menu)
        Select(driver.find_element(By.ID, "model-select")).select_by_value("tiny-sd2")
        WebDriverWait(driver, 10).until(lambda d: "tiny-sd2" in d.find_element(By.ID, "status").text)
        got, want = txt2img_against_cli(driver, sd2, 11, "model-menu")
        check("the second model's picture equals the CLI's", len(got) == 1 and same_pixels(got[0], want))
    finally:
        if driver:
            driver.quit()
        if server:
            server.stop()
        if worker and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        pg.stop()
        shutil.rmtree(qtmp, ignore_errors=True)


def main():
    os.makedirs(ART, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sd1_session(tmp)
        controlnet_session(tmp)
        sdxl_session(tmp)
        queue_session(tmp)
        src = test_image(os.path.join(tmp, "depth-input.png"), 96, 64)
        single_tab_session("tiny-sd2-depth", "depth2img", tmp,
                           ["--image", src, "--strength", "0.7", "--steps", "4", "--guidance-scale", "7.5", "--seed", "5"],
                           {"init_image": src, "denoising_strength": 0.7, "steps": 4, "cfg_scale": 7.5, "seed": 5})
        small = test_image(os.path.join(tmp, "small.png"), 24, 16)
        single_tab_session("tiny-sd-x4-upscaler", "upscale", tmp,
                           ["--image", small, "--steps", "4", "--guidance-scale", "9", "--noise-level", "20", "--seed", "6"],
                           {"init_image": small, "steps": 4, "cfg_scale": 9, "noise_level": 20, "seed": 6})
    print(f"browser: {results['passed']} passed, {results['failed']} failed")
    print(f"screenshots in {ART}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
