// Playback of one segment in a <video> from its signed URL, seeking to an offset. A video the browser cannot
// play (H.265/HEVC in Chromium, for one) is said so, with its download offered instead.

/** Whether this browser can play MP4 video of `codec` (e.g. "avc1.64001f", "hvc1.1.6.L93.B0"); unknown: true. */
export function canPlayCodec(video, codec) {
  if (!codec) return true;
  const type = `video/mp4; codecs="${codec}"`;
  if (video.canPlayType(type) !== "") return true;
  return typeof MediaSource !== "undefined" && MediaSource.isTypeSupported(type);
}

export class Player {
  constructor(box, { onTime, onEnded, onUnplayable }) {
    this.box = box;
    this.video = box.querySelector("video");
    this.unplayable = box.querySelector(".unplayable");
    this.segment = null;
    this.closes = 0; // close() calls: a play whose segment details arrive after a close must not reopen it
    this.video.addEventListener("timeupdate", () => {
      if (this.segment) onTime(this.segment.start + this.video.currentTime);
    });
    this.video.addEventListener("ended", () => { if (this.segment) onEnded(this.segment); });
    this.video.addEventListener("error", () => {
      const err = this.video.error;
      // 3 MEDIA_ERR_DECODE, 4 MEDIA_ERR_SRC_NOT_SUPPORTED: the codec; others (network, aborted) are not
      if (this.segment && err && (err.code === 3 || err.code === 4)) this._cannotPlay(onUnplayable);
    });
    this.video.addEventListener("loadedmetadata", () => {
      // a container that opens but holds no video track this browser decodes
      if (this.segment && this.video.videoWidth === 0) this._cannotPlay(onUnplayable);
    });
    this._onUnplayable = onUnplayable;
  }

  /** Play `detail` (GET /api/segments/{id}: signed_video_url) from `offset` seconds into it. */
  play(detail, offset) {
    this.segment = detail;
    this.box.hidden = false;
    this.unplayable.hidden = true;
    this.video.hidden = false;
    this.unplayable.querySelector("a").href = detail.signed_video_url;
    if (!canPlayCodec(this.video, detail.codec)) {
      this._cannotPlay(this._onUnplayable);
      return;
    }
    const at = Math.max(0, Math.min(offset, Math.max(0, detail.duration - 0.2)));
    this.video.src = `${detail.signed_video_url}#t=${at.toFixed(2)}`;
    const seek = () => {
      if (Math.abs(this.video.currentTime - at) > 0.3) this.video.currentTime = at;
      this.video.play().catch(() => { /* autoplay refused: the controls remain */ });
    };
    this.video.addEventListener("loadedmetadata", seek, { once: true });
  }

  close() {
    this.closes += 1;
    this.segment = null;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
    this.box.hidden = true;
  }

  _cannotPlay(cb) {
    this.video.pause();
    this.video.hidden = true;
    this.unplayable.hidden = false;
    cb(this.segment);
  }
}
