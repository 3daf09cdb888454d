// soco demo editor: the page. Konva draws the frame, the masks, the prompts and the keypoints in image
// coordinates (the stage is scaled to fit); the server segments, validates, saves and tries transfers.
"use strict";

const COLORS = { object: "rgba(30,144,255,255)", part: "rgba(255,140,0,255)" };
const $ = (id) => document.getElementById(id);
const editor = { state: null, scale: 1, masks: {}, clicks: { object: [], part: [] }, boxes: { object: null, part: null },
  keypoints: [], selected: -1, history: [], revision: "", liveImage: null, busy: 0 };
window.editor = editor; // the browser test reads it (image <-> page coordinates)

// ------------------------------------------------------------------------------------------------ messages
function showError(text) { const e = $("error"); e.textContent = text; e.hidden = !text; if (text) $("message").textContent = ""; }
function showMessage(text) { $("message").textContent = text; if (text) showError(""); }

async function api(path, body) {
  editor.busy++;
  document.body.dataset.busy = editor.busy;
  try {
    const response = await fetch(path, body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    let data;
    try { data = await response.json(); } catch (e) { data = { error: `server answered ${response.status} without JSON` }; }
    if (!response.ok) { const err = new Error(data.error || response.statusText); err.stale = !!data.stale; throw err; }
    return data;
  } catch (err) {
    if (err instanceof TypeError) err.message = `the editor server does not answer (${err.message}); is soco demo edit still running?`;
    throw err;
  } finally {
    editor.busy--;
    document.body.dataset.busy = editor.busy;
  }
}

function loadImage(src) {
  return new Promise((resolve, reject) => { const img = new Image(); img.onload = () => resolve(img); img.onerror = reject; img.src = src; });
}

// ------------------------------------------------------------------------------------------------ masks
function newMaskCanvas() { const c = document.createElement("canvas"); c.width = editor.state.width; c.height = editor.state.height; return c; }

async function maskFromPng(target, src) {
  const canvas = newMaskCanvas();
  if (src) {
    const img = await loadImage(src);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const [r, g, b] = COLORS[target].match(/\d+/g).map(Number);
    for (let i = 0; i < data.data.length; i += 4) {
      const on = data.data[i] > 127;
      data.data[i] = r; data.data[i + 1] = g; data.data[i + 2] = b; data.data[i + 3] = on ? 255 : 0;
    }
    ctx.putImageData(data, 0, 0);
  }
  editor.masks[target] = canvas;
  layers.masks[target].image(canvas);
  layers.mask.batchDraw();
}

function maskIsEmpty(target) {
  const c = editor.masks[target];
  const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 127) return false;
  return true;
}

function maskDataUrl(target) { return maskIsEmpty(target) ? null : editor.masks[target].toDataURL("image/png"); }

// ------------------------------------------------------------------------------------------------ undo
function snapshot() {
  return { keypoints: JSON.parse(JSON.stringify(editor.keypoints)), clicks: JSON.parse(JSON.stringify(editor.clicks)),
    boxes: JSON.parse(JSON.stringify(editor.boxes)), masks: { object: editor.masks.object.toDataURL(), part: editor.masks.part.toDataURL() },
    category: $("category").value, func: $("function").value };
}
function pushHistory() { editor.history.push(snapshot()); if (editor.history.length > 100) editor.history.shift(); }

async function restore(s) {
  editor.keypoints = s.keypoints; editor.clicks = s.clicks; editor.boxes = s.boxes;
  $("category").value = s.category; $("function").value = s.func;
  for (const target of ["object", "part"]) {
    const img = await loadImage(s.masks[target]);
    const canvas = newMaskCanvas(); canvas.getContext("2d").drawImage(img, 0, 0);
    editor.masks[target] = canvas; layers.masks[target].image(canvas);
  }
  renderAll();
}

async function undo() {
  const s = editor.history.pop();
  if (!s) { showMessage("nothing to undo"); return; }
  await restore(s);
  showMessage("undone");
}

// ------------------------------------------------------------------------------------------------ stage
const layers = {};

function buildStage(img) {
  const { width, height } = editor.state;
  const maxW = Math.max(320, window.innerWidth - 460), maxH = Math.max(240, window.innerHeight - 120);
  editor.scale = Math.min(1.5, maxW / width, maxH / height);
  const stage = new Konva.Stage({ container: "stage", width: Math.round(width * editor.scale), height: Math.round(height * editor.scale),
    scale: { x: editor.scale, y: editor.scale } });
  layers.image = new Konva.Layer({ listening: false });
  layers.image.add(new Konva.Image({ image: img, width, height }));
  layers.mask = new Konva.Layer({ listening: false });
  layers.masks = { object: new Konva.Image({ opacity: 0.45 }), part: new Konva.Image({ opacity: 0.55 }) };
  layers.mask.add(layers.masks.object, layers.masks.part);
  layers.prompts = new Konva.Layer({ listening: false });
  layers.keypoints = new Konva.Layer();
  stage.add(layers.image, layers.mask, layers.prompts, layers.keypoints);
  editor.stage = stage;
  stage.on("mousedown touchstart", onDown);
  stage.on("mousemove touchmove", onMove);
  stage.on("mouseup touchend", onUp);
  stage.on("contextmenu", (e) => e.evt.preventDefault());
}

// Image pixel (continuous coordinates) -> offset from the stage container's top-left, and back.
editor.imageToPage = (x, y) => ({ x: x * editor.scale, y: y * editor.scale });
function pointer() {
  const p = editor.stage.getRelativePointerPosition();
  return { x: Math.min(Math.max(p.x, 0), editor.state.width - 1e-3), y: Math.min(Math.max(p.y, 0), editor.state.height - 1e-3) };
}
const tool = () => document.querySelector("input[name=tool]:checked").value;
const target = () => $("target").value;

let drag = null;
function onDown(e) {
  if (e.target && e.target.getAttr("keypointIndex") !== undefined && tool() === "keypoint") return; // Konva drags it
  const p = pointer();
  const negative = e.evt.shiftKey || e.evt.button === 2;
  drag = { start: p, last: p, negative, rect: null };
  if (tool() === "paint" || tool() === "erase") { pushHistory(); paintAt(p, p); }
}

function onMove() {
  if (!drag) return;
  const p = pointer();
  if (tool() === "paint" || tool() === "erase") { paintAt(drag.last, p); drag.last = p; return; }
  if (tool() !== "segment") return;
  const d = Math.hypot(p.x - drag.start.x, p.y - drag.start.y) * editor.scale;
  if (d > 4) {
    if (!drag.rect) { drag.rect = new Konva.Rect({ stroke: "#ff0", strokeWidth: 2 / editor.scale, dash: [6 / editor.scale, 4 / editor.scale] }); layers.prompts.add(drag.rect); }
    drag.rect.setAttrs({ x: Math.min(p.x, drag.start.x), y: Math.min(p.y, drag.start.y), width: Math.abs(p.x - drag.start.x), height: Math.abs(p.y - drag.start.y) });
    layers.prompts.batchDraw();
  }
}

async function onUp() {
  if (!drag) return;
  const d = drag; drag = null;
  const p = pointer();
  if (tool() === "segment") {
    pushHistory();
    const t = target();
    if (d.rect) {
      editor.boxes[t] = [Math.min(p.x, d.start.x), Math.min(p.y, d.start.y), Math.max(p.x, d.start.x), Math.max(p.y, d.start.y)];
      d.rect.destroy();
    } else {
      editor.clicks[t].push([d.start.x, d.start.y, d.negative ? 0 : 1]);
    }
    await segment(t);
  } else if (tool() === "keypoint") {
    pushHistory();
    addKeypoint(d.start);
  } else {
    renderAll();
  }
}

function paintAt(a, b) {
  const ctx = editor.masks[target()].getContext("2d");
  ctx.globalCompositeOperation = tool() === "erase" ? "destination-out" : "source-over";
  ctx.strokeStyle = COLORS[target()]; ctx.lineCap = "round"; ctx.lineWidth = Number($("brush").value);
  ctx.beginPath(); ctx.moveTo(a.x, a.y); ctx.lineTo(b.x + 0.01, b.y); ctx.stroke();
  ctx.globalCompositeOperation = "source-over";
  layers.mask.batchDraw();
}

async function segment(t) {
  renderPrompts();
  try {
    const result = await api("/api/segment", { points: editor.clicks[t], box: editor.boxes[t], target: t });
    await maskFromPng(t, result.mask);
    $("seg-info").textContent = `${t === "object" ? "object" : "functional part"}: ${result.source}, ${result.area} px, score ${result.score.toFixed(2)}, ${result.seconds.toFixed(2)} s`;
    showMessage("");
  } catch (err) {
    showError(`segmentation: ${err.message}`);
  }
}

function renderPrompts() {
  layers.prompts.destroyChildren();
  for (const t of ["object", "part"]) {
    const box = editor.boxes[t];
    if (box) layers.prompts.add(new Konva.Rect({ x: box[0], y: box[1], width: box[2] - box[0], height: box[3] - box[1], stroke: t === "object" ? "#1e90ff" : "#ff8c00", strokeWidth: 2 / editor.scale }));
    for (const [x, y, label] of editor.clicks[t])
      layers.prompts.add(new Konva.Circle({ x, y, radius: 5 / editor.scale, fill: label ? "#2ecc40" : "#ff4136", stroke: "#fff", strokeWidth: 1 / editor.scale }));
  }
  layers.prompts.batchDraw();
}

// ------------------------------------------------------------------------------------------------ keypoints
function category() { return editor.state.categories.find((c) => c.name === $("category").value); }

function nextName() {
  const used = new Set(editor.keypoints.map((k) => k.name));
  const cat = category();
  if (cat) { const free = cat.keypoints.find((k) => !used.has(k.name)); if (free) return free.name; }
  let i = editor.keypoints.length + 1;
  while (used.has(`point_${i}`)) i++;
  return `point_${i}`;
}

function addKeypoint(p) {
  editor.keypoints.push({ name: nextName(), xy: [p.x, p.y] });
  editor.selected = editor.keypoints.length - 1;
  renderAll();
}

function renderKeypoints() {
  layers.keypoints.destroyChildren();
  editor.keypoints.forEach((kp, i) => {
    const group = new Konva.Group({ x: kp.xy[0], y: kp.xy[1], draggable: tool() === "keypoint" });
    const dot = new Konva.Circle({ radius: 6 / editor.scale, fill: i === editor.selected ? "#ffdc00" : "#f012be", stroke: "#fff", strokeWidth: 2 / editor.scale });
    dot.setAttr("keypointIndex", i);
    group.add(dot, new Konva.Text({ x: 8 / editor.scale, y: -6 / editor.scale, text: `${i + 1} ${kp.name}`, fontSize: 13 / editor.scale, fill: "#fff", shadowColor: "#000", shadowBlur: 3, listening: false }));
    group.on("dragstart", () => { pushHistory(); editor.selected = i; });
    group.on("dragmove", () => {
      group.x(Math.min(Math.max(group.x(), 0), editor.state.width - 1e-3)); group.y(Math.min(Math.max(group.y(), 0), editor.state.height - 1e-3));
    });
    group.on("dragend", () => { kp.xy = [group.x(), group.y()]; renderAll(); });
    group.on("click", () => { editor.selected = i; renderList(); renderKeypoints(); });
    layers.keypoints.add(group);
  });
  layers.keypoints.batchDraw();
}

function renderList() {
  const list = $("keypoints");
  list.innerHTML = "";
  const cat = category();
  editor.keypoints.forEach((kp, i) => {
    const li = document.createElement("li");
    li.className = i === editor.selected ? "selected" : "";
    li.dataset.index = i;
    const select = document.createElement("select");
    select.className = "kp-name";
    const names = cat ? cat.keypoints : [];
    select.add(new Option("(free text)", ""));
    for (const k of names) { const o = new Option(k.name, k.name); o.title = k.description + (k.mirror ? ` (mirror: ${k.mirror})` : ""); select.add(o); }
    select.value = names.some((k) => k.name === kp.name) ? kp.name : "";
    select.onchange = () => { if (select.value) { pushHistory(); kp.name = select.value; renderAll(); } };
    const text = document.createElement("input");
    text.className = "kp-free"; text.value = kp.name; text.title = "free-text name (concept or concept/identity, e.g. handle_top or wheel_center/front-left)";
    text.onchange = () => { pushHistory(); kp.name = text.value.trim(); renderAll(); };
    const mirror = document.createElement("button");
    const info = names.find((k) => k.name === kp.name);
    mirror.textContent = "L/R"; mirror.className = "kp-mirror"; mirror.title = "swap left/right identity";
    mirror.disabled = !(info && info.mirror);
    mirror.onclick = () => { pushHistory(); kp.name = info.mirror; renderAll(); };
    const del = document.createElement("button");
    del.textContent = "delete"; del.className = "kp-delete";
    del.onclick = () => { pushHistory(); editor.keypoints.splice(i, 1); editor.selected = -1; renderAll(); };
    li.append(select, " ", text, " ", mirror, " ", del);
    li.title = info ? info.description : "";
    li.onclick = (e) => { if (e.target === li) { editor.selected = i; renderList(); renderKeypoints(); } };
    list.append(li);
  });
}

function renderAll() {
  renderPrompts(); renderKeypoints(); renderList();
  const functional = $("mode-functional").checked;
  $("keypoint-panel").hidden = functional; $("function-panel").hidden = !functional;
  const hints = { segment: "click the object (shift/right-click: background), or drag a box around it",
    keypoint: "click to add a keypoint, drag one to move it; name it in the list", paint: "drag to paint the mask being edited", erase: "drag to erase from the mask being edited" };
  $("hint").textContent = hints[tool()];
  layers.mask.batchDraw();
}

// ------------------------------------------------------------------------------------------------ save / try
function payload() {
  return { mode: $("mode-functional").checked ? "functional" : "keypoints", revision: editor.revision, category: $("category").value,
    keypoints: editor.keypoints, mask: maskDataUrl("object"), function: $("function").value, function_mask: maskDataUrl("part") };
}

async function save(force) {
  try {
    const result = await api("/api/save", { ...payload(), force: !!force });
    editor.revision = result.revision;
    showMessage(result.message);
  } catch (err) {
    if (err.stale && window.confirm(`${err.message}\n\nOverwrite it with this page's demo?`)) return save(true);
    showError(`not saved: ${err.message}`);
  }
}

async function tryTransfer(grab) {
  if (!grab && !editor.liveImage) { showError("choose a live image first (or grab one from the camera)"); return; }
  $("try-info").textContent = "running the node's pipeline...";
  try {
    const result = await api("/api/try", { ...payload(), image: editor.liveImage, grab: !!grab });
    const body = $("matches").querySelector("tbody");
    body.innerHTML = "";
    for (const m of result.matches) {
      const row = body.insertRow();
      row.className = m.accepted ? "accepted" : "rejected";
      row.insertCell().textContent = m.name; row.insertCell().textContent = m.score.toFixed(3); row.insertCell().textContent = m.accepted ? "yes" : "no";
    }
    $("matches").hidden = result.mode !== "keypoints";
    $("overlay").src = result.overlay; $("overlay").hidden = false;
    const a = result.alignment;
    $("try-info").textContent = `${result.mode}; segmentation ${result.segmentation}; ${a.kind} alignment: ${a.success ? "pose" : "no pose"} (${a.reason}); ${result.seconds.toFixed(2)} s`;
    showMessage("transfer tried");
  } catch (err) {
    $("try-info").textContent = "";
    showError(`try: ${err.message}`);
  }
}

function readLiveFile() {
  const file = $("live-file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => { editor.liveImage = reader.result; showMessage(`live image: ${file.name}`); };
  reader.onerror = () => showError(`cannot read ${file.name}`);
  reader.readAsDataURL(file);
}

// ------------------------------------------------------------------------------------------------ start
async function start() {
  try {
    const state = await api("/api/state");
    editor.state = state; editor.revision = state.revision;
    $("folder").textContent = state.folder;
    for (const c of state.categories) $("category").add(new Option(`${c.name} (${c.supercategory})`, c.name));
    for (const f of state.functions) $("function").add(new Option(f, f));
    buildStage(await loadImage(state.image));
    await maskFromPng("object", state.mask);
    await maskFromPng("part", state.function_mask);
    editor.keypoints = state.keypoints.map((k) => ({ name: k.name, xy: k.xy }));
    $("category").value = state.category || "";
    if (state.mode === "functional") { $("mode-functional").checked = true; $("function").value = state.function; $("target").value = "part"; }
    $("grab").hidden = !state.can_grab;
    $("try").disabled = !state.can_try;
    $("seg-info").textContent = `segmentation: ${state.segmentation.reason}`;
    renderAll();
    document.body.dataset.ready = "1";
  } catch (err) {
    showError(`cannot load the demo: ${err.message}`);
  }
}

document.querySelectorAll("input[name=tool]").forEach((r) => r.addEventListener("change", renderAll));
document.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", () => {
  $("target").value = $("mode-functional").checked ? "part" : "object"; renderAll(); }));
$("category").addEventListener("change", () => { pushHistory(); renderAll(); });
$("function").addEventListener("change", () => pushHistory());
$("clear-mask").onclick = () => { pushHistory(); const t = target(); editor.clicks[t] = []; editor.boxes[t] = null; maskFromPng(t, null); renderAll(); };
$("undo").onclick = undo;
$("save").onclick = () => save(false);
$("try").onclick = () => tryTransfer(false);
$("grab").onclick = () => tryTransfer(true);
$("live-file").onchange = readLiveFile;
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
  if ((e.key === "Delete" || e.key === "Backspace") && editor.selected >= 0 && document.activeElement === document.body) {
    pushHistory(); editor.keypoints.splice(editor.selected, 1); editor.selected = -1; renderAll(); }
});
start();
