// A camera's live view: its HLS live stream (/api/cameras/{name}/live.m3u8: ~1 s fMP4 fragments written by the
// recording ffmpeg, at most a few seconds behind) in a muted <video> where the browser plays HLS natively
// (Chromium does: canPlayType says "maybe"); otherwise, and whenever the stream is not there (camera stopped,
// live view off, an error), the latest snapshot.jpg refreshed every few seconds (only while the page is
// visible). The stream is looked for again every LIVE_RETRY_MS.

import { liveUrl, snapshotUrl } from "./api.js";
import { timeEl } from "./timefmt.js";

export const SNAPSHOT_EVERY_MS = 3000;
export const LIVE_RETRY_MS = 10000;

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
    await this.tryLive();
  }

  async tryLive() {
    if (this.video || this.looking) return;
    if (!document.createElement("video").canPlayType("application/vnd.apple.mpegurl")) return;
    this.looking = true;
    const url = await liveUrl(this.camera);
    this.looking = false;
    if (url && !this.video) this._hls(url);
    else if (!this.video) setTimeout(() => this.tryLive(), LIVE_RETRY_MS);
  }

  refresh() {
    if (this.video || this.loading || document.hidden) return;
    this.loading = true;
    const next = new Image();
    next.onload = () => {
      this.loading = false;
      this.img.src = next.src;
      this.img.hidden = Boolean(this.video);  // a snapshot that arrives once the video plays stays hidden
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
    v.addEventListener("error", () => {
      v.remove();
      this.video = null;
      this.img.hidden = false;
      delete this.box.dataset.live;
      this.refresh();
      setTimeout(() => this.tryLive(), LIVE_RETRY_MS);
    });
    v.addEventListener("timeupdate", () => this.when.replaceChildren("live"), { once: true });
    this.img.hidden = true;
    this.img.before(v);
    this.video = v;
    this.box.dataset.live = "hls";
  }
}
