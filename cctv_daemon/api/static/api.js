// Talking to the daemon's API (docs/api.md). The session cookie (HttpOnly, from the one-time sign-in link of
// `cctv-daemon ui-url`) authenticates; state-changing requests also send the session's CSRF token, which
// /api/session hands out. No token or secret is ever stored in this page.

const CSRF_HEADER = "X-CSRF-Token";
let csrf = "";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers[CSRF_HEADER] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail ?? detail; } catch { /* not JSON */ }
    throw new ApiError(resp.status, detail);
  }
  return resp.status === 204 ? null : resp.json();
}

/** The caller's role ("viewer" | "admin"); remembers the CSRF token for later requests. */
export async function session() {
  const s = await request("GET", "/api/session");
  csrf = s.csrf || "";
  return s.role;
}

export const cameras = () => request("GET", "/api/cameras").then((r) => r.cameras);
export const start = (name) => request("POST", `/api/cameras/${encodeURIComponent(name)}/start`);
export const stop = (name) => request("POST", `/api/cameras/${encodeURIComponent(name)}/stop`);
export const record = (name, minutes, label) =>
  request("POST", `/api/cameras/${encodeURIComponent(name)}/record`, { minutes, label: label || null });
export const segment = (id) => request("GET", `/api/segments/${encodeURIComponent(id)}`);
export const deleteSegment = (id) => request("DELETE", `/api/segments/${encodeURIComponent(id)}`);

export const SEGMENTS_PAGE = 2000;

/** Segments of `camera` overlapping [from, to) (epoch seconds), with the gaps between them: every page of the
 * listing, following `next` (a day of 10 s segments is 8 640 of them; docs/api.md). */
export async function segments(camera, from, to) {
  const all = { segments: [], gaps: [], start: from, end: to, next: null };
  let cursor = null;
  do {
    const q = new URLSearchParams({ camera, from: String(from), to: String(to), limit: String(SEGMENTS_PAGE) });
    if (cursor) q.set("cursor", cursor);
    const page = await request("GET", `/api/segments?${q}`);
    all.segments.push(...page.segments);
    all.gaps.push(...page.gaps);
    cursor = page.next;
  } while (cursor);
  return all;
}

export function exportUrl(camera, from, to) {
  const q = new URLSearchParams({ camera, from: from.toFixed(3), to: to.toFixed(3) });
  return `/api/export?${q}`;
}

export function snapshotUrl(camera) {
  return `/api/cameras/${encodeURIComponent(camera)}/snapshot.jpg?t=${Date.now()}`;
}

/** The live HLS playlist, when the backend offers one (a later step): its URL, else null. */
export async function liveUrl(camera) {
  const url = `/api/cameras/${encodeURIComponent(camera)}/live.m3u8`;
  try {
    const resp = await fetch(url, { method: "HEAD", credentials: "same-origin", cache: "no-store" });
    return resp.ok ? url : null;
  } catch {
    return null;
  }
}
