// The page of `sd serve`: plain JavaScript against the server's AUTOMATIC1111-style API, no build step
// and nothing fetched from elsewhere. Every request goes to this origin, so HTTP Basic credentials the
// browser asked for once are sent with each call.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const TABS = [
  { id: "txt2img", label: "Text to image" },
  { id: "img2img", label: "Image to image" },
  { id: "inpaint", label: "Inpainting" },
  { id: "depth2img", label: "Depth to image" },
  { id: "upscale", label: "Upscaling" },
];

const state = {
  tab: "txt2img",
  caps: null,
  image: null,       // data URL of the chosen input image
  imageSize: null,   // [w, h]
  maskFile: null,    // data URL of an uploaded mask (instead of the painted one)
  depthFile: null,   // data URL of an uploaded depth map
  lastSeed: null,
  cnImage: null,     // data URL of the ControlNet control image
  model: null,       // the model picked in the menu (a shared queue's fronts offer every live worker's models)
  running: null,     // { controller, taskId }
};

// ---- server calls --------------------------------------------------------------------------------

async function api(path, body, signal) {
  const init = body === undefined ? { method: "GET" } : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
  };
  // Against the origin, not the document URL: a page opened as http://user:pass@host/ would otherwise make
  // every fetch carry credentials in its URL, which browsers refuse; the cached Basic credentials still go.
  const res = await fetch(new URL(path, location.origin), init);
  let data = null;
  const text = await res.text();
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  if (!res.ok) { const e = new Error(`HTTP ${res.status}`); e.status = res.status; e.data = data; e.retryAfter = res.headers.get("Retry-After"); throw e; }
  return data;
}

function endpointFor(tab) {
  return state.caps.endpoints[tab];
}

// ---- tabs and fields -----------------------------------------------------------------------------

function buildTabs() {
  const nav = $("#tabs");
  nav.textContent = "";
  for (const t of TABS) {
    if (!state.caps.pipelines.includes(t.id)) continue;
    const b = document.createElement("button");
    b.type = "button";
    b.role = "tab";
    b.id = `tab-${t.id}`;
    b.textContent = t.label;
    b.addEventListener("click", () => selectTab(t.id));
    nav.appendChild(b);
  }
  selectTab(state.caps.pipelines.includes(state.tab) ? state.tab : state.caps.pipelines[0]);
}

function selectTab(id) {
  state.tab = id;
  for (const b of $$("#tabs button")) b.setAttribute("aria-selected", String(b.id === `tab-${id}`));
  for (const f of $$("[data-for]")) {
    const list = f.dataset.for.split(" ");
    f.hidden = !(list.includes("all") || list.includes(id));
  }
  clearErrors();
  const useInput = $("#cn-use-input");
  if (useInput) useInput.hidden = id === "txt2img";
  if (id === "inpaint") layoutMask();
}

// ---- input image, mask painting ------------------------------------------------------------------

function readFile(input) {
  return new Promise((resolve, reject) => {
    const f = input.files && input.files[0];
    if (!f) return resolve(null);
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(f);
  });
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("not an image"));
    img.src = url;
  });
}

async function setInputImage(url) {
  state.image = url;
  if (!url) { state.imageSize = null; return; }
  const img = await loadImage(url);
  state.imageSize = [img.naturalWidth, img.naturalHeight];
  const base = $("#mask-base"), paint = $("#mask-paint");
  base.width = paint.width = img.naturalWidth;
  base.height = paint.height = img.naturalHeight;
  base.getContext("2d").drawImage(img, 0, 0);
  clearMask();
  layoutMask();
}

function layoutMask() { /* the canvases scale with CSS; nothing to do until an image is set */ }

let eraser = false;
function clearMask() {
  const c = $("#mask-paint");
  c.getContext("2d").clearRect(0, 0, c.width, c.height);
  state.maskFile = null;
}

function invertMask() {
  const c = $("#mask-paint"), ctx = c.getContext("2d");
  const data = ctx.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < data.data.length; i += 4) {
    const on = data.data[i + 3] > 127;
    data.data[i] = 255; data.data[i + 1] = 255; data.data[i + 2] = 255; data.data[i + 3] = on ? 0 : 255;
  }
  ctx.putImageData(data, 0, 0);
}

function setupPainting() {
  const c = $("#mask-paint");
  let last = null;
  const point = (e) => {
    const r = c.getBoundingClientRect();
    return [(e.clientX - r.left) * c.width / r.width, (e.clientY - r.top) * c.height / r.height];
  };
  const stroke = (from, to) => {
    const ctx = c.getContext("2d");
    const scale = c.width / c.getBoundingClientRect().width;
    ctx.globalCompositeOperation = eraser ? "destination-out" : "source-over";
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineCap = "round";
    ctx.lineWidth = Number($("#brush").value) * scale;
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(to[0], to[1]);
    ctx.stroke();
  };
  c.addEventListener("pointerdown", (e) => { c.setPointerCapture(e.pointerId); last = point(e); stroke(last, last); state.maskFile = null; });
  c.addEventListener("pointermove", (e) => { if (!last) return; const p = point(e); stroke(last, p); last = p; });
  const end = () => { last = null; };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", end);
  $("#eraser").addEventListener("click", () => { eraser = !eraser; $("#eraser").setAttribute("aria-pressed", String(eraser)); });
  $("#mask-clear").addEventListener("click", clearMask);
  $("#mask-invert").addEventListener("click", invertMask);
}

/// The painted mask as a black/white PNG data URL (white = repaint), as AUTOMATIC1111's API takes it.
function paintedMask() {
  const c = $("#mask-paint");
  const out = document.createElement("canvas");
  out.width = c.width; out.height = c.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(c, 0, 0);
  const data = ctx.getImageData(0, 0, out.width, out.height);
  for (let i = 0; i < data.data.length; i += 4) {
    const v = data.data[i] > 127 ? 255 : 0;
    data.data[i] = data.data[i + 1] = data.data[i + 2] = v; data.data[i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return out.toDataURL("image/png");
}

// ---- the request ---------------------------------------------------------------------------------

function num(id) { return Number($(`#${id}`).value); }

function request() {
  const seedRandom = $("#seed-random").checked;
  const body = {
    prompt: $("#prompt").value,
    negative_prompt: $("#negative_prompt").value,
    steps: num("steps"),
    cfg_scale: num("cfg_scale"),
    sampler_name: $("#sampler_name").value,
    batch_size: num("batch_size"),
    seed: seedRandom ? -1 : num("seed"),
  };
  const tab = state.tab;
  if (tab === "txt2img" || tab === "inpaint") { body.width = num("width"); body.height = num("height"); }
  if (tab !== "txt2img") {
    if (!state.image) throw fieldError("init_images", "Choose an image first.");
    body.init_images = [state.image];
  }
  // img2img and depth2img keep the picture's size (rounded down to a multiple of 8), as the CLI does.
  if ((tab === "img2img" || tab === "depth2img") && state.imageSize) {
    body.width = Math.max(8, state.imageSize[0] - state.imageSize[0] % 8);
    body.height = Math.max(8, state.imageSize[1] - state.imageSize[1] % 8);
  }
  if (tab === "img2img" || tab === "inpaint" || tab === "depth2img") body.denoising_strength = num("denoising_strength");
  if (tab === "inpaint") {
    body.mask = state.maskFile || paintedMask();
    const pad = num("inpaint_full_res_padding");
    body.inpaint_full_res = pad > 0;
    body.inpaint_full_res_padding = pad;
    body.mask_blur = 0;
  }
  if (tab === "depth2img" && state.depthFile) body.depth_map = state.depthFile;
  if (tab === "upscale") body.noise_level = num("noise_level");
  // An SDXL base served with --refiner: diffusers' ensemble of expert denoisers, as A1111's refiner fields ask.
  if (state.caps.refiner && (tab === "txt2img" || tab === "img2img") && $("#refiner-on").checked) {
    body.refiner_checkpoint = state.caps.refiner;
    body.refiner_switch_at = num("refiner_switch_at");
  }
  if (state.model) body.override_settings = { sd_model_checkpoint: state.model };
  const unit = controlNetUnit();
  if (unit) body.alwayson_scripts = { controlnet: { args: [unit] } };
  return body;
}

// ---- ControlNet (sd-webui-controlnet's unit, as its API takes it) --------------------------------------

function controlNetUnit() {
  const panel = $("#controlnet");
  if (!panel || panel.hidden || !$("#cn_enabled").checked) return null;
  const useInput = state.tab !== "txt2img" && $("#cn_use_input").checked;
  if (!useInput && !state.cnImage) throw fieldError("alwayson_scripts", "Choose a control image (or turn ControlNet off).");
  const unit = {
    enabled: true, model: $("#cn_model").value, module: $("#cn_module").value, weight: num("cn_weight"),
    guidance_start: num("cn_start"), guidance_end: num("cn_end"), threshold_a: num("cn_low"), threshold_b: num("cn_high"),
    // Stretched to the picture's size as diffusers (and the CLI) fit control images.
    resize_mode: "Just Resize", control_mode: "Balanced", pixel_perfect: false, processor_res: 512,
  };
  if (!useInput) unit.image = state.cnImage;
  return unit;
}

function showModuleFields() {
  const module = $("#cn_module").value;
  for (const f of $$("[data-cn-module]")) f.hidden = f.dataset.cnModule !== module;
}

async function previewControlImage() {
  clearErrors();
  const image = state.tab !== "txt2img" && $("#cn_use_input").checked ? state.image : state.cnImage;
  if (!image) { showErrors({ data: { detail: [{ loc: ["alwayson_scripts"], msg: "Choose a control image first." }] } }); return; }
  try {
    const res = await api("/controlnet/detect", {
      controlnet_module: $("#cn_module").value, controlnet_input_images: [image], controlnet_processor_res: 512,
      controlnet_threshold_a: num("cn_low"), controlnet_threshold_b: num("cn_high"),
    });
    const img = $("#cn_preview_img");
    img.src = `data:image/png;base64,${res.images[0]}`;
    img.hidden = false;
  } catch (e) {
    const items = ((e.data && e.data.detail) || []).map((it) => ({ loc: ["alwayson_scripts"], msg: it.msg || String(it) }));
    showErrors({ data: { detail: items.length ? items : [{ loc: ["alwayson_scripts"], msg: e.message }] } });
  }
}

/// The panel shows only when the server offers ControlNets (`sd serve --controlnet`).
async function setupControlNet() {
  let models = [], modules = [];
  try {
    models = (await api("/controlnet/model_list")).model_list || [];
    modules = (await api("/controlnet/module_list")).module_list || [];
  } catch (_) { /* a server without the API: no panel */ }
  if (!models.length) { $("#controlnet").remove(); return; }
  for (const [select, names] of [[$("#cn_model"), models], [$("#cn_module"), modules]]) {
    for (const n of names) { const o = document.createElement("option"); o.value = n; o.textContent = n; select.appendChild(o); }
  }
  $("#cn_module").addEventListener("change", showModuleFields);
  $("#cn_image").addEventListener("change", async (e) => { state.cnImage = await readFile(e.target); });
  $("#cn_preview").addEventListener("click", previewControlImage);
  showModuleFields();
}

function fieldError(field, msg) { const e = new Error(msg); e.field = field; return e; }

function clearErrors() {
  for (const e of $$("[data-error]")) e.textContent = "";
  for (const e of $$(".invalid")) e.classList.remove("invalid");
}

/// Shows a 422's messages next to the fields they name (FastAPI's `detail: [{loc, msg}]`).
function showErrors(err) {
  const detail = err.data && err.data.detail;
  const items = Array.isArray(detail) ? detail : [{ loc: [], msg: typeof detail === "string" ? detail : (err.message || String(err)) }];
  for (const it of items) {
    const field = (it.loc || []).filter((p) => typeof p === "string" && p !== "body").pop() || "_";
    const box = $(`[data-error="${field}"]`) || $("#form-error");
    box.textContent = (box.textContent ? box.textContent + " " : "") + it.msg;
    const input = $(`#${field}`);
    if (input) input.classList.add("invalid");
  }
}

async function generate(ev) {
  ev.preventDefault();
  if (state.running) return;
  clearErrors();
  let body;
  try { body = request(); } catch (e) { showErrors({ data: { detail: [{ loc: [e.field || "_"], msg: e.message }] } }); return; }
  const taskId = `task(${Math.random().toString(36).slice(2)}${Date.now().toString(36)})`;
  body.force_task_id = taskId;
  const controller = new AbortController();
  state.running = { controller, taskId };
  $("#generate").disabled = true;
  $("#cancel").disabled = false;
  // The last run's preview must not stand for this one's (and shows only once this run sends one).
  $("#preview").removeAttribute("src");
  setStatus("Queued…");
  const poller = pollProgress(taskId);
  try {
    const res = await api(endpointFor(state.tab), body, controller.signal);
    const info = typeof res.info === "string" ? JSON.parse(res.info) : (res.info || {});
    state.lastSeed = info.seed ?? (info.all_seeds || [])[0] ?? null;
    $("#seed-reuse").disabled = state.lastSeed === null;
    for (const b64 of res.images) addCard(b64);
    const count = `${res.images.length} image${res.images.length === 1 ? "" : "s"}`;
    // An interrupted run still answers, with the picture it was drawing (as AUTOMATIC1111's Interrupt).
    setStatus(info.interrupted ? `Interrupted: ${count} (the last one as far as it got), seed ${state.lastSeed}.`
                               : `Done: ${count}, seed ${state.lastSeed}.`);
  } catch (e) {
    if (e.name === "AbortError") setStatus("Cancelled.");
    else if (e.status === 503) setStatus(`The server is busy; try again in ${e.retryAfter || "a few"} seconds.`);
    else { setStatus("Failed."); showErrors(e); }
  } finally {
    state.running = null;
    poller.stop();
    $("#generate").disabled = false;
    $("#cancel").disabled = true;
    $("#progress").hidden = true;
    $("#preview").hidden = true;
  }
}

async function cancel() {
  const run = state.running;
  if (!run) return;
  // Our running job is interrupted: it stops after its current step and the request still answers, with
  // the picture so far. A queued one is dropped by closing its request (which also stops it, should it have
  // started meanwhile); so is a running one whose interrupt could not be sent.
  if (run.active) {
    try {
      await api("/sdapi/v1/interrupt", {});
      setStatus("Interrupting…");
      return;
    } catch (_) { /* fall through to the abort */ }
  }
  setStatus("Cancelling…");
  run.controller.abort();
}

function pollProgress(taskId) {
  let stopped = false, previewId = -1;
  const tick = async () => {
    if (stopped) return;
    try {
      const p = await api("/internal/progress", { id_task: taskId, id_live_preview: previewId, live_preview: true });
      if (stopped) return;
      const bar = $("#progress");
      if (state.running && state.running.taskId === taskId) state.running.active = !!p.active;
      if (p.queued) {
        setStatus(p.textinfo || "In queue…");
      } else if (p.active) {
        bar.hidden = false;
        bar.value = p.progress || 0;
        const eta = p.eta != null ? `, about ${Math.max(0, Math.round(p.eta))} s left` : "";
        setStatus(`${p.textinfo || "Generating"}${eta}`);
        if (p.live_preview) { $("#preview").src = p.live_preview; $("#preview").hidden = false; previewId = p.id_live_preview; }
      }
    } catch (_) { /* progress is best effort */ }
    if (!stopped) timer = setTimeout(tick, 250);
  };
  let timer = setTimeout(tick, 100);
  return { stop() { stopped = true; clearTimeout(timer); } };
}

function setStatus(text) { $("#status").textContent = text; }

// ---- gallery -------------------------------------------------------------------------------------

/// The `parameters` tEXt/iTXt chunk of a PNG (what the CLI and the server write, and other tools read).
function pngParameters(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 8;
  const dec = new TextDecoder("latin1"), utf8 = new TextDecoder("utf-8");
  while (off + 8 <= bytes.length) {
    const len = dv.getUint32(off), type = dec.decode(bytes.subarray(off + 4, off + 8));
    const data = bytes.subarray(off + 8, off + 8 + len);
    if (type === "tEXt" || type === "iTXt") {
      const nul = data.indexOf(0);
      const key = dec.decode(data.subarray(0, nul));
      if (key === "parameters") {
        if (type === "tEXt") return dec.decode(data.subarray(nul + 1));
        // iTXt: keyword, flag, method, language\0, translated keyword\0, text (uncompressed only)
        let p = nul + 3;
        p = data.indexOf(0, p) + 1;
        p = data.indexOf(0, p) + 1;
        if (data[nul + 1] === 0) return utf8.decode(data.subarray(p));
      }
    }
    if (type === "IEND") break;
    off += 12 + len;
  }
  return "";
}

function b64ToBytes(b64) {
  const bin = atob(b64.replace(/^data:[^,]*,/, ""));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function addCard(b64) {
  const url = b64.startsWith("data:") ? b64 : `data:image/png;base64,${b64}`;
  const card = $("#card").content.firstElementChild.cloneNode(true);
  const params = pngParameters(b64ToBytes(b64));
  $("img", card).src = url;
  $(".params", card).textContent = params;
  const a = $(".download", card);
  a.href = url;
  a.download = `sd-${Date.now()}.png`;
  for (const b of $$("[data-send]", card)) {
    if (!state.caps.pipelines.includes(b.dataset.send)) { b.hidden = true; continue; }
    b.addEventListener("click", async () => { await setInputImage(url); selectTab(b.dataset.send); });
  }
  $("[data-use]", card).addEventListener("click", () => useParameters(params));
  $("#gallery").prepend(card);
}

/// Fills the form from an AUTOMATIC1111-style parameters text (prompt, "Negative prompt:", settings line).
function useParameters(text) {
  const lines = text.split("\n");
  const settings = lines.length > 1 ? lines.pop() : "";
  let negative = "";
  const neg = lines.findIndex((l) => l.startsWith("Negative prompt: "));
  let prompt = lines;
  if (neg >= 0) { negative = lines.slice(neg).join("\n").slice("Negative prompt: ".length); prompt = lines.slice(0, neg); }
  $("#prompt").value = prompt.join("\n");
  $("#negative_prompt").value = negative;
  const fields = {};
  for (const part of settings.split(", ")) {
    const i = part.indexOf(": ");
    if (i > 0) fields[part.slice(0, i)] = part.slice(i + 2);
  }
  if (fields["Steps"]) $("#steps").value = fields["Steps"];
  if (fields["CFG scale"]) $("#cfg_scale").value = fields["CFG scale"];
  if (fields["Seed"]) { $("#seed").value = fields["Seed"]; $("#seed-random").checked = false; }
  if (fields["Size"]) { const [w, h] = fields["Size"].split("x"); $("#width").value = w; $("#height").value = h; }
  if (fields["Sampler"]) {
    const opt = $$("#sampler_name option").find((o) => o.value === fields["Sampler"] || o.dataset.aliases?.split(",").includes(fields["Sampler"]));
    if (opt) $("#sampler_name").value = opt.value;
  }
}

// ---- the model menu (several models: a front of a shared queue) ----------------------------------------

function applyCapabilities() {
  if (state.caps.default_sampler) $("#sampler_name").value = state.caps.default_sampler;
  $("#model-name").textContent = (state.caps.model || "") + (state.caps.family === "sdxl" ? " (SDXL)" : "");
  if (state.caps.width) $("#width").value = state.caps.width;
  if (state.caps.height) $("#height").value = state.caps.height;
  // The refiner field exists only for a model served with one; selectTab shows it on its tabs.
  const refiner = $("#refiner");
  if (state.caps.refiner) {
    refiner.dataset.for = "txt2img img2img";
    $("#refiner-name").textContent = state.caps.refiner;
  } else {
    refiner.dataset.for = "none";
  }
}

function setupModelMenu() {
  const models = state.caps.models || [];
  if (models.length < 2) return;
  const menu = $("#model-select");
  for (const m of models) { const o = document.createElement("option"); o.value = m; o.textContent = m; menu.appendChild(o); }
  menu.value = state.caps.model;
  menu.hidden = false;
  $("#model-name").hidden = true;
  menu.addEventListener("change", async () => {
    try {
      state.caps = await api(`/sd/v1/capabilities?model=${encodeURIComponent(menu.value)}`);
      state.model = menu.value;
      applyCapabilities();
      buildTabs();
      setStatus(`Model: ${menu.value}.`);
    } catch (e) { setStatus(`Cannot switch to ${menu.value} (${e.message}).`); }
  });
}

// ---- start ---------------------------------------------------------------------------------------

async function start() {
  setupPainting();
  $("#params").addEventListener("submit", generate);
  $("#cancel").addEventListener("click", cancel);
  $("#seed-random").addEventListener("change", () => { $("#seed").disabled = $("#seed-random").checked; });
  $("#seed").disabled = true;
  $("#seed-reuse").addEventListener("click", () => {
    if (state.lastSeed === null) return;
    $("#seed").value = state.lastSeed; $("#seed-random").checked = false; $("#seed").disabled = false;
  });
  $("#init_image").addEventListener("change", async (e) => {
    try { await setInputImage(await readFile(e.target)); } catch (err) { showErrors({ data: { detail: [{ loc: ["init_images"], msg: err.message }] } }); }
  });
  $("#mask_file").addEventListener("change", async (e) => { state.maskFile = await readFile(e.target); });
  $("#depth_file").addEventListener("change", async (e) => { state.depthFile = await readFile(e.target); });
  try {
    state.caps = await api("/sd/v1/capabilities");
    const samplers = await api("/sdapi/v1/samplers");
    for (const s of samplers) {
      const o = document.createElement("option");
      o.value = s.name; o.textContent = s.name; o.dataset.aliases = (s.aliases || []).join(",");
      $("#sampler_name").appendChild(o);
    }
    applyCapabilities();
    setupModelMenu();
    await setupControlNet();
    buildTabs();
  } catch (e) {
    setStatus(`Cannot reach the server (${e.message}).`);
  }
}

start();
