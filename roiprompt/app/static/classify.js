// roiprompt app, the Classify tab: labels, training, predictions, MedFocusCLIP's attention, export. Loaded after
// app.js, whose state (S), helpers ($, api, guard, esc, pollOnce) and poll loop it shares.
"use strict";

const C = { classes: [], cardEls: {}, selected: null };

function classes() {
  // the server's classes (labels in use) and the ones added on the page but not used yet
  const c = S.state.classify;
  for (const k of c.classes) if (!C.classes.includes(k)) C.classes.push(k);
  for (const p of Object.values(c.predictions)) for (const k of Object.keys(p.scores)) if (!C.classes.includes(k)) C.classes.push(k);
  return C.classes;
}

function renderClassify() {
  const st = S.state, c = st.classify;
  const sel = $("#classifier");
  if (sel.options.length !== c.methods.length) {
    sel.innerHTML = c.methods.map((m) => `<option value="${esc(m)}">${esc(m)}${m === "linear_probe_masked" ? " (recommended)" : ""}</option>`).join("");
    sel.value = c.method;
  }
  const names = classes();
  $("#class-list").textContent = names.length ? names.join(", ") : "none yet";
  const grid = $("#cgrid");
  for (const img of st.images.filter((i) => !i.error)) {
    let d = C.cardEls[img.id];
    if (!d) {
      d = C.cardEls[img.id] = document.createElement("div");
      d.className = "card"; d.dataset.id = img.id;
      grid.appendChild(d);
    }
    const label = c.labels[img.id] || "", pred = c.predictions[img.id] || null;
    const hasRoi = ["result", "reference", "edited"].includes(img.state);
    const key = JSON.stringify([img.v, img.state, label, pred, names]);
    if (d.dataset.key === key) continue;
    d.dataset.key = key;
    d.dataset.label = label; d.dataset.pred = pred ? pred.label : "";
    d.className = "card" + (label ? " labelled" : pred ? " predicted" : "") + (C.selected === img.id ? " selected" : "");
    const options = ["", ...names].map((k) => `<option value="${esc(k)}"${k === label ? " selected" : ""}>${k ? esc(k) : "– unlabelled –"}</option>`).join("");
    let body = "";
    if (pred) {
      body = `<div class="pred">→ ${esc(pred.label)} (${pred.scores[pred.label].toFixed(2)})</div>` +
        Object.entries(pred.scores).map(([k, p]) => `<div class="bar"><span>${esc(k)}</span><span class="track"><span class="fill" style="width:${(100 * p).toFixed(1)}%; display:block"></span></span><span>${p.toFixed(2)}</span></div>`).join("");
    } else if (!hasRoi) body = `<div class="muted pred">no ROI mask yet</div>`;
    d.innerHTML = `<img alt="" src="/api/images/${img.id}/overlay.jpg?v=${img.v}">` +
      `<div class="name" title="${esc(img.name)}">${esc(img.name)}</div><select class="label">${options}</select>${body}`;
    d.querySelector("select").onchange = (ev) => guard(async () => {
      await api("PUT", `/api/images/${img.id}/label`, { label: ev.target.value });
      await pollOnce();
    });
    d.querySelector("img").onclick = () => explain(img.id);
  }
}

async function explain(id) {
  await guard(async () => {
    C.selected = id;
    document.querySelectorAll(".card").forEach((e) => e.classList.toggle("selected", Number(e.dataset.id) === id));
    const c = S.state.classify, name = S.state.images[id].name;
    if (!c.trained || c.method !== "medfocusclip") {
      $("#explain-info").textContent = "train medfocusclip to see where it looks";
      return;
    }
    $("#explain-info").textContent = `${name}: drawing the attention…`;
    const r = await fetch(`/api/images/${id}/attention.png?t=${Date.now()}`);
    if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
    $("#explain-img").src = URL.createObjectURL(await r.blob());
    $("#explain-img").dataset.id = id;
    $("#explain-info").textContent = `${name}: attention of the visual pooling, without and with the ROI guidance (cyan: the ROI)`;
  });
}

function setTab(tab) {
  document.body.dataset.tab = tab;
  if (tab === "classify" && S.state) renderClassify();
}

function wireClassify() {
  document.querySelectorAll(".tab").forEach((b) => (b.onclick = () => setTab(b.dataset.tab)));
  $("#add-class").onclick = () => guard(async () => {
    const name = $("#new-class").value.trim();
    if (!name) throw new Error("type a class name first (e.g. malignant)");
    if (!C.classes.includes(name)) C.classes.push(name);
    $("#new-class").value = "";
    for (const d of Object.values(C.cardEls)) d.dataset.key = "";
    renderClassify();
  });
  $("#labels-file").onchange = (ev) => guard(async () => {
    const f = ev.target.files[0]; if (!f) return;
    const fd = new FormData(); fd.append("file", f);
    const r = await api("POST", "/api/classify/labels", fd, true);
    ev.target.value = "";
    $("#classify-info").textContent = `${r.set} labels loaded` + (r.unknown.length ? `; not in the study: ${r.unknown.slice(0, 5).join(", ")}` : "");
    await pollOnce();
  });
  $("#train").onclick = () => guard(async () => { await api("POST", "/api/classify/train", { method: $("#classifier").value }); await pollOnce(); });
  $("#predict").onclick = () => guard(async () => { await api("POST", "/api/classify/predict"); await pollOnce(); });
  $("#classify-export").onclick = () => guard(async () => {
    const r = await api("POST", "/api/classify/export");
    $("#classify-info").textContent = `exported ${r.rows} rows and the classifier to ${r.out}`;
    $("#classify-info").dataset.exported = r.out;
  });
}

wireClassify();
