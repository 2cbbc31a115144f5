// A camera's live view: the latest snapshot.jpg, refreshed every few seconds (only while the page is visible).
// Seam for the real live view: when the backend offers /api/cameras/{name}/live.m3u8 and the browser plays HLS
// natively, a muted <video> shows it instead (the snapshots come back if it fails).

import { liveUrl, snapshotUrl } from "./api.js";
import { timeEl } from "./timefmt.js";

export const SNAPSHOT_EVERY_MS = 3000;

export class LiveView {
  constructor(box, camera) {
    this.box = box;
    this.camera = camera;
    this.img = box.querySelector("img.snapshot");
    this.when = box.querySelector(".live-time");
    this.none = box.querySelector(".live-none");
    this.loading = false;
    this.video = null;
    this.timer = null;
    this.updates = 0;
  }

  async start() {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), SNAPSHOT_EVERY_MS);
    const url = await liveUrl(this.camera);
    if (url && document.createElement("video").canPlayType("application/vnd.apple.mpegurl")) this._hls(url);
  }

  refresh() {
    if (this.video || this.loading || document.hidden) return;
    this.loading = true;
    const next = new Image();
    next.onload = () => {
      this.loading = false;
      this.img.src = next.src;
      this.img.hidden = false;
      this.none.hidden = true;
      this.updates += 1;
      this.box.dataset.updates = String(this.updates);
      this.when.replaceChildren("picture of ", timeEl(Date.now() / 1000));
    };
    next.onerror = () => {
      this.loading = false;
      if (!this.updates) { this.img.hidden = true; this.none.hidden = false; }
    };
    next.src = snapshotUrl(this.camera);
  }

  _hls(url) {
    const v = document.createElement("video");
    Object.assign(v, { muted: true, autoplay: true, playsInline: true, src: url });
    v.className = "live-video";
    v.addEventListener("error", () => { v.remove(); this.video = null; this.img.hidden = false; this.refresh(); });
    this.img.hidden = true;
    this.img.before(v);
    this.video = v;
    this.box.dataset.live = "hls";
  }
}
