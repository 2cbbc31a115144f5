// A camera's timeline: recordings (segments merged into runs) and gaps over a window of time. A click picks a
// moment (to play from), a drag selects a range (to download).

import { localTime, utc } from "./timefmt.js";

const DRAG_PX = 6;

export const UPLOAD_TEXT = { uploaded: "uploaded", pending: "not uploaded yet" };

/** "uploaded", "pending" (an upload state other than uploaded), or "" (no upload state: uploads not configured). */
export function uploadOf(seg) {
  if (!seg.upload_state) return "";
  return seg.upload_state === "uploaded" ? "uploaded" : "pending";
}

export class Timeline {
  constructor(el, ticksEl, { onPick, onSelect }) {
    this.el = el;
    this.ticksEl = ticksEl;
    this.onPick = onPick;
    this.onSelect = onSelect;
    this.segments = [];
    this.gaps = [];
    this.from = 0;
    this.to = 1;
    this.selection = null;
    this.playhead = null;
    this._drag = null;
    el.addEventListener("pointerdown", (e) => this._down(e));
    el.addEventListener("pointermove", (e) => this._move(e));
    el.addEventListener("pointerup", (e) => this._up(e));
    el.addEventListener("pointercancel", () => { this._drag = null; });
    el.addEventListener("keydown", (e) => this._key(e));
  }

  setWindow(from, to) { this.from = from; this.to = to; this.render(); }
  setData(segments, gaps) {
    this.segments = [...segments].sort((a, b) => a.start - b.start);
    this.gaps = gaps;
    this.render();
  }
  addSegment(seg) {
    if (this.segments.some((s) => s.id === seg.id)) return;
    this.segments.push(seg);
    this.segments.sort((a, b) => a.start - b.start);
    // a new segment closes the open gap up to its end
    this.gaps = this.gaps.filter((g) => !(g.start >= seg.start - 1 && g.end <= seg.end + 1));
    this.render();
  }
  /** A segment's upload was verified (the `segment_uploaded` event). */
  setUploaded(id) {
    const seg = this.segments.find((s) => s.id === id);
    if (!seg || seg.upload_state === "uploaded") return false;
    seg.upload_state = "uploaded";
    this.render();
    return true;
  }
  setSelection(sel) { this.selection = sel; this.render(); }
  setPlayhead(t) {
    this.playhead = t;
    const ph = this.el.querySelector(".playhead");
    if (ph && t !== null && t >= this.from && t <= this.to) ph.style.left = `${this._pct(t)}%`;
    else this.render();
  }

  /** The segment holding time t, else the nearest one within `slack` seconds. */
  segmentAt(t, slack = 0) {
    let best = null;
    let bestDist = Infinity;
    for (const s of this.segments) {
      const dist = t < s.start ? s.start - t : t >= s.end ? t - s.end : 0;
      if (dist < bestDist) { best = s; bestDist = dist; }
      if (dist === 0) break;
    }
    return bestDist <= slack ? best : null;
  }

  nextSegment(seg) {
    const i = this.segments.findIndex((s) => s.id === seg.id);
    const next = i >= 0 ? this.segments[i + 1] : null;
    return next && next.start - seg.end < 2 ? next : null;
  }

  secondsPerPx() { return (this.to - this.from) / Math.max(1, this.el.clientWidth); }
  _pct(t) { return ((t - this.from) / (this.to - this.from)) * 100; }
  _timeAt(clientX) {
    const r = this.el.getBoundingClientRect();
    const x = Math.min(Math.max(clientX - r.left, 0), r.width);
    return this.from + (x / Math.max(1, r.width)) * (this.to - this.from);
  }

  _block(cls, start, end, title) {
    const s = Math.max(start, this.from);
    const e = Math.min(end, this.to);
    if (e <= s) return null;
    const b = document.createElement("div");
    b.className = cls;
    b.style.left = `${this._pct(s)}%`;
    b.style.width = `max(${this._pct(e) - this._pct(s)}%, 3px)`;
    b.title = title;
    this.el.append(b);
    return b;
  }

  /** Runs of touching segments (and those less than a pixel apart) with the same labels and upload state:
   * fewer elements. Upload: "uploaded" (verified in S3), "pending" (not yet), "" (uploads not configured). */
  _runs() {
    const tol = Math.max(1, this.secondsPerPx());
    const runs = [];
    for (const s of this.segments) {
      if (s.end <= this.from || s.start >= this.to) continue;
      const upload = uploadOf(s);
      const key = `${upload}\u0001${(s.labels || []).join("\u0000")}`;
      const last = runs[runs.length - 1];
      if (last && last.key === key && s.start - last.end <= tol) {
        last.end = Math.max(last.end, s.end);
        last.count += 1;
      } else {
        runs.push({ start: s.start, end: s.end, key, labels: s.labels || [], upload, count: 1 });
      }
    }
    return runs;
  }

  render() {
    this.el.replaceChildren();
    const now = Date.now() / 1000;
    for (const g of this.gaps) {
      const end = Math.min(g.end, now); // the future is not a gap
      if (end > g.start) this._block("gap", g.start, end, `gap ${localTime(g.start)}–${localTime(end)} (${Math.round(end - g.start)} s)`);
    }
    for (const r of this._runs()) {
      const lab = r.labels.length ? ` [${r.labels.join(", ")}]` : "";
      const up = r.upload ? ` · ${UPLOAD_TEXT[r.upload]}` : "";
      const cls = `rec${r.labels.length ? " labelled" : ""}${r.upload ? ` ${r.upload}` : ""}`;
      const b = this._block(cls, r.start, r.end,
        `recorded ${localTime(r.start)}–${localTime(r.end)} (UTC ${utc(r.start)}–${utc(r.end)})${lab}${up}`);
      if (b) { b.dataset.count = String(r.count); b.dataset.upload = r.upload; }
    }
    if (now > this.from && now < this.to) this._block("now", now, now + this.secondsPerPx(), `now ${localTime(now)}`);
    if (this.selection) {
      const [a, z] = this.selection;
      this._block("sel", a, z, `selected ${localTime(a)}–${localTime(z)}`);
    }
    const ph = document.createElement("div");
    ph.className = "playhead";
    ph.hidden = this.playhead === null || this.playhead < this.from || this.playhead > this.to;
    if (!ph.hidden) ph.style.left = `${this._pct(this.playhead)}%`;
    this.el.append(ph);
    this._ticks();
  }

  _ticks() {
    const span = this.to - this.from;
    const steps = [60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600];
    const step = steps.find((s) => span / s <= 6) || 6 * 3600;
    const first = Math.ceil(this.from / step) * step;
    this.ticksEl.replaceChildren();
    for (let t = first; t < this.to; t += step) {
      const d = new Date(t * 1000);
      // align hour ticks to local hours (time zones with a half-hour offset)
      const lt = step >= 3600 ? t - d.getMinutes() * 60 : t;
      const span_ = document.createElement("span");
      span_.style.left = `${this._pct(lt)}%`;
      span_.textContent = localTime(lt, false);
      span_.title = utc(lt);
      this.ticksEl.append(span_);
    }
  }

  _down(e) {
    if (e.button !== 0) return;
    this._drag = { x: e.clientX, t: this._timeAt(e.clientX), moved: false };
    this.el.setPointerCapture(e.pointerId);
  }
  _move(e) {
    if (!this._drag) return;
    if (Math.abs(e.clientX - this._drag.x) >= DRAG_PX) this._drag.moved = true;
    if (this._drag.moved) {
      const t = this._timeAt(e.clientX);
      this.setSelection([Math.min(t, this._drag.t), Math.max(t, this._drag.t)]);
    }
  }
  _up(e) {
    const drag = this._drag;
    this._drag = null;
    if (!drag) return;
    if (drag.moved) {
      const t = this._timeAt(e.clientX);
      const sel = [Math.min(t, drag.t), Math.max(t, drag.t)];
      this.setSelection(sel);
      this.onSelect(sel);
    } else {
      this.onPick(drag.t, 8 * this.secondsPerPx());
    }
  }
  _key(e) {
    // keyboard: Enter plays the latest recording of the window
    if (e.key === "Enter" && this.segments.length) {
      const last = this.segments[this.segments.length - 1];
      this.onPick(Math.max(last.start, last.end - 1), 0);
    }
  }
}
