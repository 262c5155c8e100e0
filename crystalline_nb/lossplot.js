const NS = "http://www.w3.org/2000/svg";
const AXES = { epochs: 0, steps: 1, tokens: 2, minutes: 3 };
const UNITS = { nats: "loss (nats/token)", bits: "loss (bits/byte)" };
const M = { left: 58, right: 16, top: 22, bottom: 40 };

function columns(dv, k) {  // k float64 columns packed one after the other
  if (!dv || !dv.byteLength) return null;
  const a = new Float64Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + dv.byteLength));
  const n = a.length / k, out = [];
  for (let i = 0; i < k; i++) out.push(a.subarray(i * n, (i + 1) * n));
  return out;
}

function smooth(y, w) {  // EMA with TensorBoard's debiasing, as LossPlot's smooth()
  const out = new Float64Array(y.length);
  let acc = 0, norm = 0;
  for (let i = 0; i < y.length; i++) {
    acc = w * acc + (1 - w) * y[i];
    norm = w * norm + (1 - w);
    out[i] = acc / norm;
  }
  return out;
}

function xsOf(c, axis) {
  const x = c[AXES[axis]];
  if (axis !== "minutes") return x;
  let t0 = 0;
  for (const v of x) if (v === v) { t0 = v; break; }
  return x.map((v) => (v - t0) / 60);
}

function atStep(c, xs, step) {  // x of the first training point at or after `step`
  for (let i = 0; i < c[1].length; i++) if (c[1][i] >= step) return xs[i];
  return NaN;
}

function niceTicks(lo, hi, n) {
  const span = hi - lo || Math.abs(hi) || 1, raw = span / n, p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => span / s <= n) || 10 * p;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function logTicks(lo, hi) {
  const out = [];
  for (const mults of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    out.length = 0;
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
      for (const m of mults) { const v = m * Math.pow(10, e); if (v >= lo && v <= hi) out.push(v); }
    if (out.length >= 3) break;
  }
  // the ends of the range labelled too when the ticks leave a wide part of it bare (a curve between 2.4 and 3)
  const lg = Math.log10, bare = (a, b) => lg(b) - lg(a) > 0.35 * (lg(hi) - lg(lo));
  const end = (v) => +v.toPrecision(2);
  if (out.length && bare(lo, out[0]) && end(lo * 1.02) < out[0]) out.unshift(end(lo * 1.02));
  if (out.length && bare(out[out.length - 1], hi) && end(hi / 1.02) > out[out.length - 1]) out.push(end(hi / 1.02));
  return out;
}

function num(v) {  // a setting as people write it: 0.85, not 0.8500000000000001
  return String(+(+v).toFixed(3));
}

function fmt(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return +(v / 1e9).toPrecision(3) + "G";
  if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
  if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
  return String(+v.toPrecision(4));
}

function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function text(s, attrs, parent) {
  const t = el("text", attrs, parent);
  t.textContent = s;
  return t;
}

function pathOf(xs, ys, sx, sy) {
  let d = "", pen = false;
  for (let i = 0; i < xs.length; i++) {
    const x = sx(xs[i]), y = sy(ys[i]);
    if (!(x === x && y === y && isFinite(x) && isFinite(y))) {
      pen = false;
      continue;
    }
    d += (pen ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1);
    pen = true;
  }
  return d;
}

function render({ model, el: host }) {
  const root = document.createElement("div");
  root.className = "cllm-lossplot";
  host.appendChild(root);
  const tip = document.createElement("div");
  tip.className = "cllm-lossplot-tip";
  root.appendChild(tip);
  const svg = el("svg", { height: 330 });
  root.appendChild(svg);
  let zoom = null, drag = null, view = null;

  function run(name, cols, val, marks, color, scale, axis, w, out, allMarks, live) {
    // one model's curves: raw (the live run only), smoothed, validation diamonds, and its marks, in its colour
    const xs = xsOf(cols, axis), ys = cols[4].map((v) => v * scale);
    if (live) out.push({ name: name + " train (raw)", xs, ys, color, width: 0.8, opacity: 0.3, kind: "raw",
                         legend: false, cols, run: name });
    out.push({ name: `${name} train (smoothed ${num(w)})`, xs, ys: smooth(ys, w), color, width: live ? 1.8 : 1.4,
               kind: live ? "smooth" : "compare", cols, run: name, raw: ys });
    if (val) {
      const vx = axis === "epochs" ? val[0] : Array.from(val[1], (s) => axis === "steps" ? s : atStep(cols, xs, s));
      out.push({ name: name + " validation", xs: vx, ys: val[2].map((v) => v * scale), color, width: 1.2,
                 kind: "val", run: name, dash: "4 3" });
    }
    for (const [s, label] of marks || []) allMarks.push([axis === "steps" ? s : atStep(cols, xs, s), label, color]);
  }

  function series() {  // everything drawn, in the units of the chosen axes
    const axis = model.get("x_axis"), w = model.get("smoothing"), out = [], marks = [];
    (model.get("compare") || []).forEach((c) => {
      const cc = columns(c.data, 5);
      if (cc) run(c.name, cc, columns(c.val, 3), c.marks, c.color || "#7f7f7f", c.scale || 1, axis, w, out, marks,
                  false);
    });
    const live = columns(model.get("live"), 5);
    if (live) run(model.get("name"), live, columns(model.get("val"), 3), model.get("marks"), model.get("color"),
                  model.get("scale"), axis, w, out, marks, true);
    return { axis, out, marks };
  }

  function draw() {
    const W = Math.max(320, root.clientWidth || 720), H = 330;
    svg.setAttribute("width", W);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.replaceChildren();
    const { axis, out, marks } = series(), logY = model.get("log_y");
    const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
    let x0 = Infinity, x1 = -Infinity;
    for (const s of out) for (const x of s.xs) {
      if (x === x) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
      }
    }
    if (!out.length || !(x0 <= x1)) {
      text("no training yet", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "cllm-lossplot-empty" }, svg);
      view = null;
      return;
    }
    if (zoom) [x0, x1] = zoom;
    const e = x1 === x0 ? 0.5 : zoom ? 0 : (x1 - x0) * 0.015;  // points at the ends stay whole
    x0 -= e;
    x1 += e;
    let y0 = Infinity, y1 = -Infinity;
    for (const s of out) s.xs.forEach((x, i) => {
      const y = s.ys[i];
      if (x >= x0 && x <= x1 && y === y && (!logY || y > 0)) {
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    });
    if (!(y0 <= y1)) [y0, y1] = logY ? [0.1, 10] : [0, 1];
    const ty = logY ? Math.log10 : (v) => v;
    let [a, b] = [ty(y0), ty(y1)];
    const pad = (b - a || 1) * 0.05;
    a -= pad;
    b += pad;
    const sx = (x) => M.left + (x - x0) / (x1 - x0) * pw;
    const sy = (y) => M.top + ph - (ty(y) - a) / (b - a) * ph;
    const g = el("g", { class: "cllm-lossplot-axes" }, svg);
    for (const t of niceTicks(x0, x1, Math.max(3, Math.floor(pw / 90)))) {
      el("line", { x1: sx(t), x2: sx(t), y1: M.top, y2: M.top + ph, class: "grid" }, g);
      text(fmt(t), { x: sx(t), y: M.top + ph + 14, "text-anchor": "middle" }, g);
    }
    const yt = logY ? logTicks(Math.pow(10, a), Math.pow(10, b)) : niceTicks(a, b, 6);
    for (const t of yt) {
      el("line", { x1: M.left, x2: M.left + pw, y1: sy(t), y2: sy(t), class: "grid" }, g);
      text(fmt(t), { x: M.left - 6, y: sy(t) + 4, "text-anchor": "end" }, g);
    }
    el("rect", { x: M.left, y: M.top, width: pw, height: ph, class: "frame" }, g);
    const xlabel = axis === "minutes" ? "minutes of training" : axis;
    text(xlabel, { x: M.left + pw / 2, y: H - 6, "text-anchor": "middle" }, g);
    text((UNITS[model.get("unit")] || UNITS.nats) + (logY ? ", log scale" : ""), { x: 12, y: M.top + ph / 2, "text-anchor": "middle",
         transform: `rotate(-90 12 ${M.top + ph / 2})` }, g);
    const clipId = "cllm-clip-" + Math.random().toString(36).slice(2);
    el("rect", { x: M.left, y: M.top, width: pw, height: ph }, el("clipPath", { id: clipId }, svg));
    const plot = el("g", { "clip-path": `url(#${clipId})` }, svg);
    const merged = [];  // marks closer than 8 pixels share one line: "resumed · grew to 3 layers"
    for (const [x, label, color] of marks.filter(([x]) => x >= x0 && x <= x1).sort((p, q) => p[0] - q[0])) {
      const last = merged[merged.length - 1];
      if (last && sx(x) - sx(last[0]) < 8) last[1] += " · " + label;
      else merged.push([x, label, color]);
    }
    for (const [x, label, color] of merged) {
      el("line", { x1: sx(x), x2: sx(x), y1: M.top, y2: M.top + ph, class: "mark", stroke: color || "gray" }, plot);
      const ly = M.top + ph - 4;  // written upwards from the bottom, away from the legend
      text(label, { x: sx(x) - 3, y: ly, class: "mark-label", transform: `rotate(-90 ${sx(x) - 3} ${ly})` }, plot);
    }
    for (const s of out) {
      el("path", { d: pathOf(s.xs, s.ys, sx, sy), stroke: s.color, "stroke-width": s.width, fill: "none",
                   "stroke-opacity": s.opacity || 1, "stroke-dasharray": s.dash || "none",
                   class: "series-" + s.kind }, plot);
      if (s.kind === "val") s.xs.forEach((x, i) => {
        const X = sx(x), Y = sy(s.ys[i]);
        if (X === X && Y === Y) el("path", { d: `M${X},${Y - 6}L${X + 6},${Y}L${X},${Y + 6}L${X - 6},${Y}Z`,
                                             fill: s.color, class: "val-point" }, plot);
      });
    }
    const shown = out.filter((s) => s.legend !== false), legend = el("g", { class: "legend" }, svg);
    const lw = 34 + 6.3 * Math.max(...shown.map((s) => s.name.length)), lx = M.left + pw - lw - 4;
    el("rect", { x: lx, y: M.top + 3, width: lw, height: 14 * shown.length + 4, class: "legend-box" }, legend);
    shown.forEach((s, i) => {
      const ly = M.top + 16 + 14 * i;
      el("line", { x1: lx + 6, x2: lx + 26, y1: ly - 4, y2: ly - 4, stroke: s.color, "stroke-width": 2,
                   "stroke-dasharray": s.dash || "none" }, legend);
      text(s.name, { x: lx + 30, y: ly }, legend);
    });
    text(zoom ? "zoomed: double-click shows the whole run" : "hover for values · drag across to zoom",
         { x: M.left + 4, y: M.top - 7, class: "hint" }, svg);
    view = { out, sx, sy, x0, x1, pw, ph, axis };
    svg.appendChild(cursor);
    leave();  // a tooltip of the view before (zoom, reset) would be stale
  }

  const cursor = el("g", { class: "cursor", visibility: "hidden" });
  const cline = el("line", { class: "cursor-line" }, cursor);
  const cdot = el("circle", { r: 4, class: "cursor-dot" }, cursor);
  const box = el("rect", { class: "zoom-box", visibility: "hidden" });

  function nearest(xs, x) {
    let best = -1, d = Infinity;
    for (let i = 0; i < xs.length; i++) { const e = Math.abs(xs[i] - x); if (e < d) { d = e; best = i; } }
    return best;
  }

  function hover(ev) {
    if (!view) return;
    const r = svg.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
    if (drag) {
      const a = Math.min(drag, px), b = Math.max(drag, px);
      Object.entries({ x: a, width: b - a, y: M.top, height: view.ph, visibility: "visible" })
        .forEach(([k, v]) => box.setAttribute(k, v));
      return;
    }
    if (px < M.left || px > M.left + view.pw) return leave();
    const x = view.x0 + (px - M.left) / view.pw * (view.x1 - view.x0);
    const runs = view.out.filter((s) => s.kind === "smooth" || s.kind === "compare");
    const inside = (s) => s.xs.length && x >= Math.min(s.xs[0], s.xs[s.xs.length - 1]) - 1e-9
                          && x <= Math.max(s.xs[0], s.xs[s.xs.length - 1]) + 1e-9;
    const sm = runs.find((s) => s.kind === "smooth" && inside(s)) || runs.find(inside);
    const lines = [];
    if (sm) {
      const i = nearest(sm.xs, x), c = sm.cols;
      cline.setAttribute("x1", view.sx(sm.xs[i]));
      cline.setAttribute("x2", view.sx(sm.xs[i]));
      cline.setAttribute("y1", M.top);
      cline.setAttribute("y2", M.top + view.ph);
      cdot.setAttribute("cx", view.sx(sm.xs[i]));
      cdot.setAttribute("cy", view.sy(sm.ys[i]));
      cursor.setAttribute("visibility", "visible");
      const where = [`step ${fmt(c[1][i])}`, `epoch ${c[0][i].toFixed(3)}`];
      if (c[2][i] === c[2][i]) where.push(`${fmt(c[2][i])} tokens`);
      const secs = c[3][i] - c[3][0];
      if (secs === secs) where.push(secs < 120 ? `${secs.toFixed(secs < 10 ? 1 : 0)} s`
                                               : `${(secs / 60).toFixed(1)} min`);
      lines.push(where.join(" · "));
    }
    for (const s of runs.filter(inside)) {  // every run at that x: its loss, smoothed, and the value at its point
      const i = nearest(s.xs, x);
      lines.push({ text: `${s.run}: loss ${s.raw[i].toFixed(4)} (smoothed ${s.ys[i].toFixed(4)})`, color: s.color });
    }
    for (const s of view.out) {
      if (s.kind === "val") {
        const i = nearest(s.xs, x);
        if (i >= 0 && Math.abs(view.sx(s.xs[i]) - px) < 10)
          lines.push({ text: `${s.run}: validation ${s.ys[i].toFixed(4)}`, color: s.color });
      }
    }
    tip.replaceChildren(...lines.map((l) => {
      const d = Object.assign(document.createElement("div"), { textContent: l.text || l });
      if (l.color) d.style.borderLeft = `3px solid ${l.color}`;
      return d;
    }));
    tip.style.display = lines.length ? "block" : "none";
    const tw = tip.offsetWidth;  // beside the pointer, on the side where it fits
    tip.style.left = (px + 14 + tw > r.width ? Math.max(0, px - 14 - tw) : px + 14) + "px";
    tip.style.top = Math.max(0, py - 50) + "px";
  }

  function leave() {
    cursor.setAttribute("visibility", "hidden");
    tip.style.display = "none";
  }

  svg.addEventListener("mousemove", hover);
  svg.addEventListener("mouseleave", () => {
    leave();
    drag = null;
    box.setAttribute("visibility", "hidden");
  });
  svg.addEventListener("mousedown", (ev) => {
    if (!view) return;
    ev.preventDefault();
    drag = ev.clientX - svg.getBoundingClientRect().left;
    svg.appendChild(box);
  });
  svg.addEventListener("mouseup", (ev) => {
    if (drag === null || !view) return;
    const px = ev.clientX - svg.getBoundingClientRect().left, a = Math.min(drag, px), b = Math.max(drag, px);
    drag = null;
    box.setAttribute("visibility", "hidden");
    if (b - a < 5) return;
    const at = (p) => view.x0 + (Math.min(Math.max(p, M.left), M.left + view.pw) - M.left) / view.pw
                      * (view.x1 - view.x0);
    zoom = [at(a), at(b)];
    draw();
  });
  const unzoom = () => {
    zoom = null;
    draw();
  };
  svg.addEventListener("dblclick", unzoom);
  for (const k of ["live", "val", "marks", "compare", "smoothing", "log_y", "name", "color", "scale", "unit"])
    model.on("change:" + k, draw);
  model.on("change:x_axis", unzoom);
  const ro = new ResizeObserver(() => draw());
  ro.observe(root);
  draw();
  return () => ro.disconnect();
}

export default { render };
