// One camera's card: state, live view, admin buttons, the day's timeline, playback, download and delete.

import * as api from "./api.js";
import { LiveView } from "./live.js";
import { canPlayCodec, Player } from "./player.js";
import { Timeline, UPLOAD_TEXT, uploadOf } from "./timeline.js";
import { dayRange, duration, localTime, timeEl, utc } from "./timefmt.js";

export class CameraCard {
  constructor(cam, { day, isAdmin, confirm, notify }) {
    this.name = cam.name;
    this.notify = notify;
    this.confirm = confirm;
    this.day = day;
    this.zoom = "day";
    this.unplayable = false;
    const el = document.getElementById("camera-card").content.firstElementChild.cloneNode(true);
    this.el = el;
    el.dataset.camera = cam.name;
    el.querySelector(".name").textContent = cam.name;
    el.querySelectorAll(".admin-only").forEach((x) => { x.hidden = !isAdmin; });
    this.live = new LiveView(el.querySelector(".live"), cam.name);
    this.timeline = new Timeline(el.querySelector(".timeline"), el.querySelector(".ticks"), {
      onPick: (t, slack) => this.playAt(t, slack),
      onSelect: (sel) => this.select(sel),
    });
    this.player = new Player(el.querySelector(".player"), {
      onTime: (t) => this.timeline.setPlayhead(t),
      onEnded: (seg) => this.playNext(seg),
      onUnplayable: (seg) => this.markUnplayable(seg),
    });
    this._wire(el);
    this.update(cam);
  }

  _wire(el) {
    el.querySelector(".start").addEventListener("click", () => this.act("start", () => api.start(this.name)));
    el.querySelector(".stop").addEventListener("click", () => this.act("stop", () => api.stop(this.name)));
    el.querySelector("form.record").addEventListener("submit", (e) => {
      e.preventDefault();
      const minutes = Number(el.querySelector(".minutes").value);
      if (!Number.isInteger(minutes) || minutes < 1 || minutes > 1440) {
        this.notify(`${this.name}: minutes must be a whole number from 1 to 1440`, true);
        return;
      }
      const label = el.querySelector("input.label").value.trim();
      this.act(`record ${minutes} min`, () => api.record(this.name, minutes, label));
    });
    el.querySelectorAll(".zoom button").forEach((b) => b.addEventListener("click", () => {
      el.querySelectorAll(".zoom button").forEach((x) => x.classList.toggle("on", x === b));
      this.zoom = b.dataset.zoom;
      this._applyWindow();
    }));
    el.querySelector(".sel-clear").addEventListener("click", () => this.select(null));
    el.querySelector(".player .close").addEventListener("click", () => {
      this.player.close();
      this.timeline.setPlayhead(null);
    });
    el.querySelector(".player .delete").addEventListener("click", () => this.deletePlaying());
  }

  start() { this.live.start(); return this.load(); }

  update(cam) {
    const st = this.el.querySelector(".state");
    st.textContent = cam.state;
    st.dataset.state = cam.state;
    this.el.dataset.state = cam.state;
    const parts = [cam.reason || ""];
    if (cam.mode === "onDemand") parts.push("on demand");
    if (cam.record_left_s) {
      parts.push(`recording on request: ${duration(cam.record_left_s)} left${cam.record_label ? ` (${cam.record_label})` : ""}`);
    }
    if (cam.last_error) parts.push(`last error: ${cam.last_error}`);
    const reason = this.el.querySelector(".reason");
    reason.textContent = parts.filter(Boolean).join(" · ");
    if (cam.last_segment_at) reason.title = `last segment ${utc(cam.last_segment_at)} (UTC)`;
    if ("codec" in cam) this._codec(cam.codec);
  }

  /** Say before any attempt that this browser cannot play the camera's codec (H.265 in Chromium, for one). */
  _codec(codec) {
    const note = this.el.querySelector(".codec-note");
    const cannot = Boolean(codec) && !canPlayCodec(this.player.video, codec);
    this.el.dataset.codec = codec || "";
    note.hidden = !cannot;
    if (cannot) {
      const name = /^(hvc1|hev1)/.test(codec) ? "H.265" : codec;
      note.textContent = `This browser cannot play ${name} video (${codec}): recordings are offered as downloads.`;
    }
  }

  /** The `segment_uploaded` event: the timeline shows it uploaded. */
  segmentUploaded(id) { this.timeline.setUploaded(id); }

  setState(state, reason) { this.update({ state, reason }); }

  setDay(day) { this.day = day; this.select(null); return this.load(); }

  async load() {
    const [from, to] = dayRange(this.day);
    try {
      const res = await api.segments(this.name, from, to);
      this.timeline.setData(res.segments, res.gaps);
      this._applyWindow();
      this._labels(res.segments);
      this._coverage(res.segments, from, Math.min(to, Date.now() / 1000));
    } catch (err) {
      this.notify(`${this.name}: cannot load recordings: ${err.message}`, true);
    }
  }

  addSegment(seg) {
    const [from, to] = dayRange(this.day);
    if (seg.end <= from || seg.start >= to) return;
    this.timeline.addSegment({ labels: [], video_url: `/api/segments/${seg.id}/video`, ...seg });
    if (this.zoom !== "day") this._applyWindow();
  }

  _applyWindow() {
    const [from, to] = dayRange(this.day);
    if (this.zoom === "day") { this.timeline.setWindow(from, to); return; }
    const w = Number(this.zoom);
    const center = this.timeline.playhead;
    let end = center !== null ? center + w / 2 : Math.min(Date.now() / 1000 + w * 0.05, to);
    end = Math.min(Math.max(end, from + w), to);
    this.timeline.setWindow(end - w, end);
  }

  _labels(segments) {
    const box = this.el.querySelector(".labels");
    const seen = new Map();
    for (const s of segments) for (const l of s.labels || []) if (!seen.has(l)) seen.set(l, s);
    box.replaceChildren(...[...seen].map(([label, seg]) => {
      const b = document.createElement("button");
      b.className = "chip";
      b.textContent = label;
      b.title = `first at ${localTime(seg.start)} (UTC ${utc(seg.start)}): play`;
      b.addEventListener("click", () => this.playAt(seg.start, 0));
      return b;
    }));
  }

  _coverage(segments, from, to) {
    const rec = segments.reduce((n, s) => n + Math.max(0, Math.min(s.end, to) - Math.max(s.start, from)), 0);
    this.el.querySelector(".coverage").textContent = segments.length ? `${duration(rec)} recorded` : "no recordings";
  }

  async playAt(t, slack) {
    const seg = this.timeline.segmentAt(t, slack);
    if (!seg) { this.notify(`${this.name}: nothing recorded at ${localTime(t)}`); return; }
    const offset = Math.max(0, t - seg.start);
    await this.playSegment(seg, offset);
  }

  async playSegment(seg, offset) {
    const closes = this.player.closes;
    try {
      const detail = await api.segment(seg.id);
      if (this.player.closes !== closes) return; // closed meanwhile (the segment deleted, another day shown)
      this.el.querySelector(".seg-download").href = detail.signed_video_url;
      const info = this.el.querySelector(".seg-info");
      const labels = detail.labels && detail.labels.length ? ` · labels: ${detail.labels.join(", ")}` : "";
      const upload = uploadOf(detail) ? ` · ${UPLOAD_TEXT[uploadOf(detail)]}` : "";
      info.replaceChildren("segment ", timeEl(detail.start, true), " – ", timeEl(detail.end),
        ` (${duration(detail.duration)})${labels}${upload}`);
      this.player.play(detail, offset);
      this.timeline.setPlayhead(detail.start + offset);
    } catch (err) {
      this.notify(`${this.name}: cannot play: ${err.message}`, true);
    }
  }

  playNext(seg) {
    const next = this.timeline.nextSegment(seg);
    if (next && !this.unplayable) this.playSegment(next, 0);
  }

  markUnplayable(seg) {
    this.unplayable = true;
    this.el.classList.add("unplayable-camera");
    this.notify(`${this.name}: this browser cannot play this camera's video; download it instead`);
    if (seg) this.el.querySelector(".seg-download").href = seg.signed_video_url;
  }

  select(sel) {
    const box = this.el.querySelector(".selection");
    this.timeline.setSelection(sel);
    if (!sel || sel[1] - sel[0] < 1) { box.hidden = true; return; }
    box.hidden = false;
    box.querySelector(".sel-text").replaceChildren("selected ", timeEl(sel[0]), " – ", timeEl(sel[1]),
      ` (${duration(sel[1] - sel[0])})`);
    box.querySelector(".download").href = api.exportUrl(this.name, sel[0], sel[1]);
  }

  async deletePlaying() {
    const seg = this.player.segment;
    if (!seg) return;
    const ok = await this.confirm(`Delete the segment of ${this.name} from ${localTime(seg.start)} to ` +
      `${localTime(seg.end)}? The file is removed for good.`);
    if (!ok) return;
    try {
      await api.deleteSegment(seg.id);
      this.player.close();
      this.timeline.setPlayhead(null);
      this.notify(`${this.name}: segment deleted`);
      await this.load();
    } catch (err) {
      this.notify(`${this.name}: delete failed: ${err.message}`, true);
    }
  }

  async act(what, fn) {
    const buttons = this.el.querySelectorAll(".controls button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const res = await fn();
      if (res && res.state) this.setState(res.state, "");
      this.notify(`${this.name}: ${what}: done`);
    } catch (err) {
      this.notify(`${this.name}: ${what} failed: ${err.message}`, true);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
}
