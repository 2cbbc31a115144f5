// The page: sign-in check, the grid of camera cards, live updates from /api/events (server-sent events) and a
// slow poll of /api/cameras (time left of on-demand recordings; a safety net when events are missed).

import * as api from "./api.js";
import { CameraCard } from "./card.js";
import { today } from "./timefmt.js";

const POLL_MS = 10000;
const cards = new Map();
const $ = (id) => document.getElementById(id);

function notify(text, isError = false) {
  const m = $("message");
  m.textContent = text;
  m.classList.toggle("error", isError);
  m.hidden = false;
  clearTimeout(notify.timer);
  if (!isError) notify.timer = setTimeout(() => { m.hidden = true; }, 6000);
}

function confirmDialog(text) {
  const dlg = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.returnValue = "";
    dlg.showModal();
  });
}

function signedOut() {
  document.body.classList.add("signed-out");
  const m = $("message");
  m.replaceChildren("Not signed in. On the daemon's machine run ");
  const code = document.createElement("code");
  code.textContent = "cctv-daemon ui-url";
  m.append(code, " and open the link it prints (it works once, for a few minutes).");
  m.classList.add("error");
  m.hidden = false;
}

async function poll() {
  try {
    for (const cam of await api.cameras()) cards.get(cam.name)?.update(cam);
  } catch (err) {
    if (err.status === 401) signedOut();
  }
}

function listen() {
  const conn = $("conn");
  const es = new EventSource("/api/events");
  es.onopen = () => { conn.textContent = "live"; conn.classList.add("on"); };
  es.onerror = () => { conn.textContent = "reconnecting"; conn.classList.remove("on"); };
  const data = (e) => { try { return JSON.parse(e.data); } catch { return {}; } };
  es.addEventListener("camera_state", (e) => {
    const d = data(e);
    cards.get(d.camera)?.setState(d.new, d.reason);
  });
  es.addEventListener("segment_finished", (e) => {
    const d = data(e);
    if (d.id) cards.get(d.camera)?.addSegment({ id: d.id, camera: d.camera, start: d.start, end: d.end,
      duration: d.end - d.start, size: d.size });
  });
  es.addEventListener("segment_uploaded", (e) => {
    const d = data(e);
    if (d.id) cards.get(d.camera)?.segmentUploaded(d.id);
  });
  es.addEventListener("segment_deleted", (e) => {
    const d = data(e);
    if (d.footage_lost) notify(`${d.camera}: a recording was deleted before its upload (${d.reason})`, true);
    cards.get(d.camera)?.load();
  });
  return es;
}

async function main() {
  const day = $("day");
  day.value = today();
  let role;
  try {
    role = await api.session();
  } catch (err) {
    if (err.status === 401) { signedOut(); return; }
    notify(`cannot reach the daemon: ${err.message}`, true);
    return;
  }
  const isAdmin = role === "admin";
  $("role").textContent = isAdmin ? "admin" : "viewer (read only)";
  document.body.classList.toggle("admin", isAdmin);
  const grid = $("cameras");
  const cams = await api.cameras();
  if (!cams.length) notify("no cameras configured");
  for (const cam of cams) {
    const card = new CameraCard(cam, { day: day.value, isAdmin, confirm: confirmDialog, notify });
    cards.set(cam.name, card);
    grid.append(card.el);
  }
  await Promise.all([...cards.values()].map((c) => c.start()));
  day.addEventListener("change", () => { if (day.value) for (const c of cards.values()) c.setDay(day.value); });
  listen();
  setInterval(poll, POLL_MS);
  document.body.dataset.ready = "1";
}

main();
