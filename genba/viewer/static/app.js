// genba live view: one WebSocket brings JSON status (text) and JPEG frames (binary).
// Plain JS and canvas, served by the viewer itself: the shop floor has no internet.
"use strict";

// Counters for scripts and tests (window.genba.frames advances while the stream runs).
const genba = (window.genba = { frames: 0, statuses: 0, status: null, paused: null, connected: false });

const CORE = ["episode", "step", "reward", "return", "success"];
const PLOTTED = ["joint_positions", "action"];
const HISTORY = 200; // joint samples kept for the plot
const COLORS = ["#f08a24", "#4fa3f7", "#5fd38a", "#e25d6e", "#b48cf2", "#e6d35a", "#5ad1cf", "#c0c0c0"];

const $ = (id) => document.getElementById(id);
const joints = []; // [{step, q: [..]}]
let lastUrl = null;
let fpsCount = 0;
let fpsTime = performance.now();

function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
  if (Array.isArray(v)) return v.map(fmt).join(", ");
  return String(v);
}

// Nested dicts become dotted rows: {latency: {p50: 1}} -> "latency.p50".
function flatten(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, v]);
  }
  return out;
}

function showStatus(msg) {
  const s = msg.status || {};
  genba.status = s;
  genba.paused = msg.paused;
  genba.statuses += 1;
  for (const key of CORE) $("v-" + key).textContent = fmt(s[key]);
  $("v-success").className = s.success ? "yes" : "no";
  $("v-paused").textContent = msg.paused ? "paused" : "running";
  $("pause").textContent = msg.paused ? "Resume" : "Pause";
  $("viewers").textContent = msg.viewers + (msg.viewers === 1 ? " viewer" : " viewers");
  if (msg.title) document.title = msg.title + " - genba live view";

  const rows = flatten(s, "", []).filter(([k]) => !CORE.includes(k) && !PLOTTED.includes(k));
  const table = $("extra");
  table.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    const td = document.createElement("td");
    th.textContent = k;
    td.textContent = fmt(v);
    tr.append(th, td);
    return tr;
  }));

  if (Array.isArray(s.joint_positions)) {
    const last = joints[joints.length - 1];
    if (last && last.episode !== s.episode) joints.length = 0; // plot the current episode only
    if (!last || last.step !== s.step || last.episode !== s.episode) {
      joints.push({ step: s.step, episode: s.episode, q: s.joint_positions });
      if (joints.length > HISTORY) joints.shift();
      drawJoints();
    }
  }
  if (Array.isArray(s.action)) drawAction(s.action);
}

function showFrame(blob) {
  const url = URL.createObjectURL(blob);
  const img = $("frame");
  img.onload = () => { if (lastUrl && lastUrl !== url) URL.revokeObjectURL(lastUrl); lastUrl = url; };
  img.src = url;
  genba.frames += 1;
  fpsCount += 1;
  const now = performance.now();
  if (now - fpsTime > 1000) {
    $("fps").textContent = (fpsCount * 1000 / (now - fpsTime)).toFixed(1) + " fps";
    fpsCount = 0;
    fpsTime = now;
  }
}

function clear(ctx) {
  ctx.fillStyle = "#1f2228";
  ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
}

function drawJoints() {
  const ctx = $("joints").getContext("2d");
  const { width: w, height: h } = ctx.canvas;
  clear(ctx);
  if (!joints.length) return;
  let lo = Infinity, hi = -Infinity;
  for (const { q } of joints) for (const v of q) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (hi - lo < 0.2) { const mid = (hi + lo) / 2; lo = mid - 0.1; hi = mid + 0.1; }
  const y = (v) => h - 6 - ((v - lo) / (hi - lo)) * (h - 12);
  const x = (i) => (i / (HISTORY - 1)) * w;
  ctx.fillStyle = "#8a8f98";
  ctx.font = "11px sans-serif";
  ctx.fillText(hi.toFixed(2), 4, 12);
  ctx.fillText(lo.toFixed(2), 4, h - 4);
  const n = joints[joints.length - 1].q.length;
  for (let j = 0; j < n; j++) {
    ctx.strokeStyle = COLORS[j % COLORS.length];
    ctx.beginPath();
    joints.forEach(({ q }, i) => (i ? ctx.lineTo(x(i), y(q[j])) : ctx.moveTo(x(i), y(q[j]))));
    ctx.stroke();
  }
}

function drawAction(a) {
  const ctx = $("action").getContext("2d");
  const { width: w, height: h } = ctx.canvas;
  clear(ctx);
  const scale = Math.max(1, ...a.map((v) => Math.abs(v || 0))); // actions are normalised to [-1, 1]
  const mid = h / 2;
  const bw = w / Math.max(a.length, 1);
  ctx.strokeStyle = "#3a3f4a";
  ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(w, mid); ctx.stroke();
  a.forEach((v, i) => {
    const bar = ((v || 0) / scale) * (mid - 8);
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillRect(i * bw + 4, Math.min(mid, mid - bar), bw - 8, Math.abs(bar));
    ctx.fillStyle = "#8a8f98";
    ctx.font = "11px sans-serif";
    ctx.fillText(fmt(v), i * bw + 4, h - 4);
  });
}

function send(cmd) {
  return fetch("/control", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ cmd }),
  });
}

function connect(delay) {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.binaryType = "blob";
  ws.onopen = () => {
    delay = 250;
    genba.connected = true;
    $("conn").textContent = "live";
    $("conn").className = "badge on";
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const msg = JSON.parse(ev.data);
      if (msg.type === "status") showStatus(msg);
    } else {
      showFrame(ev.data);
    }
  };
  ws.onclose = () => {
    genba.connected = false;
    $("conn").textContent = "disconnected";
    $("conn").className = "badge off";
    setTimeout(() => connect(Math.min(delay * 2, 5000)), delay); // capped backoff
  };
}

$("pause").onclick = () => send(genba.paused ? "resume" : "pause");
$("step").onclick = () => send("step");
$("reset").onclick = () => send("reset");
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT") return;
  if (ev.key === " ") { ev.preventDefault(); $("pause").click(); }
  else if (ev.key === "s") $("step").click();
  else if (ev.key === "r") $("reset").click();
});
drawJoints();
drawAction([]);
connect(250);
