// roiprompt app: the page over the HTTP API of roiprompt/app/server.py. No framework, nothing from the internet.
"use strict";

const $ = (sel) => document.querySelector(sel);
const S = {
  state: null, version: -1, current: null, image: null, imageVersion: null,
  masks: {},            // structure -> canvas at image size: opaque white inside, transparent outside
  shownKey: null,       // "<image version>|<structures>" the open image's masks were fetched at
  thumbEls: {}, tileEls: {},
  box: {}, points: {},  // per "id:structure": the box and clicks behind the draft
  drag: null, scale: 1, busyEdit: false,
};

async function api(method, path, body, raw) {
  const opts = { method };
  if (body !== undefined) {
    if (raw) opts.body = body; else { opts.body = JSON.stringify(body); opts.headers = { "Content-Type": "application/json" }; }
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { detail: text }; }
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
}

function say(text, isError) {
  $("#message").textContent = isError ? text : "";
  $("#classify-message").textContent = isError ? text : "";
  if (!isError && text) $("#info").textContent = text;
}

async function guard(fn) {
  try { say("", true); return await fn(); } catch (e) { say(e.message, true); }
}

// -- state polling ---------------------------------------------------------------------------------------------
async function poll() {
  try {
    const st = await api("GET", "/api/state");
    const changed = st.version !== S.version;
    S.state = st; S.version = st.version;
    renderJob(st.job);
    if (changed) { renderStudy(); renderStructures(); renderReview(); renderClassify(); if (S.current !== null) refreshCurrent(); }
  } catch (e) { $("#status").textContent = "server unreachable"; }
  setTimeout(poll, 400);
}

function renderJob(job) {
  const p = $("#progress");
  p.max = Math.max(job.total || 1, 1); p.value = job.done || 0;
  let text = job.state === "idle" ? "ready" : `${job.kind}: ${job.done}/${job.total} ${job.state}`;
  if (job.message && (job.state === "running" || job.kind === "training")) text += ` (${job.message})`;
  if (job.state === "failed") text = `${job.kind} failed: ${job.message}`;
  $("#status").textContent = text;
  $("#status").dataset.state = job.state;
  $("#status").dataset.kind = job.kind || "";
  const running = job.state === "running";
  $("#propagate").disabled = running || !(S.state && S.state.accepted.length);
  $("#export").disabled = running;
  const c = S.state && S.state.classify;
  $("#train").disabled = running;
  $("#predict").disabled = running || !(c && c.trained);
  $("#classify-export").disabled = running || !(c && c.trained);
  $("#stop").disabled = !running;
}

function badge(img) {
  const label = { reference: "reference", result: "result", edited: "edited", error: "unreadable", image: "" }[img.state];
  return label ? `<span class="badge ${img.state}">${label}</span>` : "";
}

function fmt(q) { return q === null || q === undefined ? "–" : q.toFixed(2); }

function renderStudy() {
  // elements are kept per image id and only changed where the image changed (a study may hold thousands)
  const st = S.state;
  $("#study-path").textContent = st.study;
  const ok = st.images.filter((i) => !i.error);
  $("#study-count").textContent = `${ok.length} images`;
  const thumbs = $("#thumbs");
  for (const img of ok) {
    let d = S.thumbEls[img.id];
    if (!d) {
      d = S.thumbEls[img.id] = document.createElement("div");
      d.className = "thumb"; d.dataset.id = img.id; d.onclick = () => openImage(img.id);
      thumbs.appendChild(d);
    }
    const key = `${img.loaded}|${img.state}`;
    if (d.dataset.key !== key) {
      d.dataset.key = key;
      d.innerHTML = (img.loaded ? `<img alt="" src="/api/images/${img.id}/thumb.jpg">` : `<div class="muted">loading…</div>`) +
        `<div class="name" title="${esc(img.name)}">${badge(img)} ${esc(img.name)}</div>`;
    }
    d.classList.toggle("current", img.id === S.current);
  }
  const bad = st.images.filter((i) => i.error);
  const html = bad.length ? `<b>Unreadable (${bad.length})</b>` +
    bad.map((i) => `<div class="error-file" title="${esc(i.error)}">${esc(i.error)}</div>`).join("") : "";
  if ($("#errors").innerHTML !== html) $("#errors").innerHTML = html;
}

function renderStructures() {
  const sel = $("#structure");
  const keep = sel.value;
  sel.innerHTML = S.state.structures.map((s) => `<option value="${esc(s)}">${esc(s)}</option>`).join("");
  if (S.state.structures.includes(keep)) sel.value = keep;
}

function renderReview() {
  const items = S.state.images.filter((i) => i.state === "result" || i.state === "edited" || i.state === "reference");
  const rank = (i) => (i.state === "reference" ? 2 : i.quality === null ? 1.5 : i.quality);
  items.sort((a, b) => rank(a) - rank(b) || a.id - b.id);
  const grid = $("#grid");
  const keep = new Set(items.map((i) => i.id));
  for (const [id, el] of Object.entries(S.tileEls)) if (!keep.has(Number(id))) { el.remove(); delete S.tileEls[id]; }
  for (const img of items) {
    let t = S.tileEls[img.id];
    if (!t) {
      t = S.tileEls[img.id] = document.createElement("div");
      t.className = "tile"; t.dataset.id = img.id; t.onclick = () => openImage(img.id);
    }
    const key = `${img.v}|${img.state}|${img.quality}`;
    if (t.dataset.key !== key) {
      t.dataset.key = key;
      t.dataset.quality = img.quality === null ? "" : img.quality;
      const low = img.quality !== null && img.quality < 0.5 ? " low" : "";
      t.innerHTML = `<img alt="" src="/api/images/${img.id}/overlay.jpg?v=${img.v}">` +
        `<div class="name">${badge(img)} ${esc(img.name)}</div>` +
        `<div class="flag${low}">quality ${fmt(img.quality)}</div>`;
    }
    grid.appendChild(t);  // (re)appended in rank order; an element already there just moves
  }
}

function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }

// -- the editor --------------------------------------------------------------------------------------------------
function loadImage(src) {
  return new Promise((resolve, reject) => { const im = new Image(); im.onload = () => resolve(im); im.onerror = reject; im.src = src; });
}

async function openImage(id) {
  await guard(async () => {
    S.current = id; S.masks = {}; S.shownKey = null;
    document.querySelectorAll(".thumb").forEach((t) => t.classList.toggle("current", Number(t.dataset.id) === id));
    const info = S.state.images.find((i) => i.id === id);
    $("#info").textContent = `${info.name}: opening…`;
    showSlicer(info);
    S.image = await loadImage(`/api/images/${id}/image.png?t=${Date.now()}`);
    fitCanvas();
    await refreshCurrent();
    const t0 = performance.now();
    $("#info").textContent = `${info.name}: encoding…`;
    await api("POST", `/api/images/${id}/encode`);
    $("#info").textContent = `${info.name} (${S.image.width}×${S.image.height}) ready: ${((performance.now() - t0) / 1000).toFixed(1)} s to encode`;
    $("#canvas").dataset.ready = id;
  });
}

function volumeSlices(info) {
  // the images of the open slice's volume, in slice order (a NIfTI volume is one image per slice)
  return S.state.images.filter((i) => info.volume && i.volume === info.volume && !i.error).sort((a, b) => a.slice - b.slice);
}

function showSlicer(info) {
  const slices = volumeSlices(info);
  $("#slicer").hidden = slices.length < 2;
  if (slices.length < 2) return;
  const k = slices.findIndex((i) => i.id === info.id);
  $("#slice").max = slices.length - 1; $("#slice").value = k;
  $("#slice-label").textContent = `${info.volume}: ${info.name.match(/\[(.*)\]/)?.[1] || k} (${k + 1} of ${slices.length})`;
}

function fitCanvas() {
  const c = $("#canvas");
  const maxW = $("#canvas-wrap").clientWidth || 640, maxH = Math.max(window.innerHeight * 0.7, 300);
  S.scale = Math.min(maxW / S.image.width, maxH / S.image.height, 1);
  c.width = Math.round(S.image.width * S.scale); c.height = Math.round(S.image.height * S.scale);
}

async function refreshCurrent() {
  if (S.current === null) return;
  const id = S.current;
  const info = S.state.images.find((i) => i.id === id);
  const key = `${info ? info.v : 0}|${S.state.structures.join(",")}`;
  if (S.shownKey === key) return draw();
  const masks = {};
  for (const s of S.state.structures) {
    const r = await fetch(`/api/images/${id}/masks/${encodeURIComponent(s)}.png?v=${encodeURIComponent(key)}`);
    if (!r.ok) continue;
    const bmp = await createImageBitmap(await r.blob());
    masks[s] = binaryCanvas(bmp);
  }
  if (S.current !== id) return;
  S.masks = masks; S.shownKey = key;
  $("#canvas").dataset.version = key;
  $("#canvas").dataset.state = info ? info.state : "";
  draw();
}

function binaryCanvas(source) {
  // 0/255 grey PNG -> white where inside, transparent elsewhere
  const c = document.createElement("canvas");
  c.width = S.image.width; c.height = S.image.height;
  const g = c.getContext("2d");
  g.drawImage(source, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height), p = d.data;
  for (let k = 0; k < p.length; k += 4) { const on = p[k] >= 128; p[k] = p[k + 1] = p[k + 2] = 255; p[k + 3] = on ? 255 : 0; }
  g.putImageData(d, 0, 0);
  return c;
}

function tinted(mask, colour) {
  const c = document.createElement("canvas");
  c.width = mask.width; c.height = mask.height;
  const g = c.getContext("2d");
  g.drawImage(mask, 0, 0);
  g.globalCompositeOperation = "source-in";
  g.fillStyle = colour; g.fillRect(0, 0, c.width, c.height);
  return c;
}

function draw() {
  const c = $("#canvas"), g = c.getContext("2d");
  if (!S.image) return;
  g.clearRect(0, 0, c.width, c.height);
  g.drawImage(S.image, 0, 0, c.width, c.height);
  g.globalAlpha = 0.45;
  for (const [s, m] of Object.entries(S.masks)) g.drawImage(tinted(m, S.state.colours[s] || "#1f77b4"), 0, 0, c.width, c.height);
  g.globalAlpha = 1;
  const key = `${S.current}:${$("#structure").value}`;
  const box = S.drag && S.drag.box ? S.drag.box : S.box[key];
  if (box) { g.strokeStyle = "#ffdd00"; g.lineWidth = 2; g.strokeRect(box[0] * S.scale, box[1] * S.scale, (box[2] - box[0]) * S.scale, (box[3] - box[1]) * S.scale); }
  for (const [x, y, l] of S.points[key] || []) {
    g.fillStyle = l ? "#00e640" : "#ff2828"; g.beginPath(); g.arc(x * S.scale, y * S.scale, 5, 0, 2 * Math.PI); g.fill();
  }
}

function imagePoint(ev) {
  const r = $("#canvas").getBoundingClientRect();
  const sx = $("#canvas").width / r.width;
  return [Math.max(0, Math.min(S.image.width, ((ev.clientX - r.left) * sx) / S.scale)),
          Math.max(0, Math.min(S.image.height, ((ev.clientY - r.top) * sx) / S.scale))];
}

function tool() { return document.querySelector("input[name=tool]:checked").value; }

function structure() {
  const s = $("#structure").value || $("#new-structure").value.trim();
  if (!s) throw new Error("name the structure first (e.g. heart), then draw");
  return s;
}

async function segment(body) {
  const t0 = performance.now();
  const r = await api("POST", `/api/images/${S.current}/segment`, body);
  await pollOnce();
  $("#info").textContent = `mask preview: ${r.area} px, predicted IoU ${r.iou_pred.toFixed(2)}, ` +
    `${r.seconds.toFixed(2)} s decode, ${((performance.now() - t0) / 1000).toFixed(2)} s round trip`;
  $("#canvas").dataset.preview = r.seconds;
}

async function pollOnce() {
  S.state = await api("GET", "/api/state"); S.version = S.state.version;
  renderStructures(); renderStudy(); renderReview(); renderClassify(); renderJob(S.state.job); await refreshCurrent();
}


function onDown(ev) {
  if (S.image === null || S.current === null) return;
  const t = tool(), p = imagePoint(ev);
  if (t === "box") S.drag = { start: p, box: [p[0], p[1], p[0], p[1]] };
  else if (t === "brush" || t === "erase") { S.drag = { brush: true }; paint(p, t === "erase"); }
}

function onMove(ev) {
  if (!S.drag) return;
  const p = imagePoint(ev);
  if (S.drag.box) { S.drag.box = [S.drag.start[0], S.drag.start[1], p[0], p[1]]; draw(); }
  else if (S.drag.brush) paint(p, tool() === "erase");
}

async function onUp(ev) {
  const drag = S.drag; S.drag = null;
  if (S.current === null || S.image === null) return;
  await guard(async () => {
    const s = structure(), key = `${S.current}:${s}`, t = tool();
    if (drag && drag.box) {
      const b = drag.box, box = [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])];
      if (box[2] - box[0] < 3 || box[3] - box[1] < 3) return draw();
      S.box[key] = box; S.points[key] = [];
      await segment({ structure: s, box });
    } else if (drag && drag.brush) {
      await sendMask(s);
    } else if (t === "pos" || t === "neg") {
      const p = imagePoint(ev);
      S.points[key] = [...(S.points[key] || []), [p[0], p[1], t === "pos" ? 1 : 0]];
      await segment({ structure: s, box: S.box[key] || null, points: S.points[key] });
    }
  });
}

function paint(p, erase) {
  const s = $("#structure").value;
  if (!s) return;
  if (!S.masks[s]) { const c = document.createElement("canvas"); c.width = S.image.width; c.height = S.image.height; S.masks[s] = c; }
  const g = S.masks[s].getContext("2d");
  const r = Number($("#brush-size").value) / S.scale / 2;
  g.globalCompositeOperation = erase ? "destination-out" : "source-over";
  g.fillStyle = "#fff"; g.beginPath(); g.arc(p[0], p[1], r, 0, 2 * Math.PI); g.fill();
  g.globalCompositeOperation = "source-over";
  draw();
}

async function sendMask(s) {
  const blob = await new Promise((res) => S.masks[s].toBlob(res, "image/png"));
  await api("PUT", `/api/images/${S.current}/masks/${encodeURIComponent(s)}`, blob, true);
  await pollOnce();
}

// what the page shows, for tests and scripts: the current image's mask of a structure as a PNG data URL
window.roiprompt = {
  maskDataURL: (s) => (S.masks[s] ? S.masks[s].toDataURL("image/png") : null),
  current: () => S.current, scale: () => S.scale,
};

// -- buttons -----------------------------------------------------------------------------------------------------
function wire() {
  const c = $("#canvas");
  c.addEventListener("mousedown", onDown);
  c.addEventListener("mousemove", onMove);
  c.addEventListener("mouseup", onUp);
  document.querySelectorAll("input[name=tool]").forEach((r) => (r.onchange = draw));
  $("#structure").onchange = draw;
  $("#add-structure").onclick = () => guard(async () => {
    const name = $("#new-structure").value.trim();
    await api("POST", "/api/structures", { name });
    $("#new-structure").value = "";
    await pollOnce();
    $("#structure").value = name;
  });
  $("#accept").onclick = () => guard(async () => {
    if (S.current === null) throw new Error("open an image first");
    await api("POST", `/api/images/${S.current}/accept`);
    await pollOnce();
    $("#info").textContent = `${S.state.images[S.current].name} is a reference (${S.state.accepted.length} in all)`;
  });
  $("#discard").onclick = () => guard(async () => { await api("POST", `/api/images/${S.current}/discard`); S.box = {}; S.points = {}; await pollOnce(); });
  $("#propagate").onclick = () => guard(async () => { await api("POST", "/api/propagate"); });
  $("#stop").onclick = () => guard(async () => { await api("POST", "/api/stop"); });
  $("#export").onclick = () => guard(async () => {
    $("#status").textContent = "exporting…";
    const r = await api("POST", "/api/export");
    $("#status").textContent = `exported ${r.images} images to ${r.out}`;
    if (r.warnings && r.warnings.length) say(r.warnings.join("; "), true);
    $("#report-link").hidden = false;
  });
  $("#mask-file").onchange = (ev) => guard(async () => {
    const f = ev.target.files[0]; if (!f) return;
    const fd = new FormData(); fd.append("file", f);
    await api("POST", `/api/images/${S.current}/masks/${encodeURIComponent(structure())}/file`, fd, true);
    ev.target.value = ""; await pollOnce();
  });
  $("#upload").onchange = (ev) => guard(async () => {
    const fd = new FormData(); for (const f of ev.target.files) fd.append("files", f);
    const r = await api("POST", "/api/upload", fd, true);
    if (r.errors.length) say(r.errors.join("; "), true);
    ev.target.value = "";
  });
  window.addEventListener("resize", () => { if (S.image) { fitCanvas(); draw(); } });
  $("#slice").oninput = () => {
    const info = S.state.images.find((i) => i.id === S.current);
    const next = volumeSlices(info)[Number($("#slice").value)];
    if (next && next.id !== S.current) openImage(next.id);
  };
}

wire();
poll();
