// Times: shown in the browser's local time; the UTC time is in the hover title.

const pad = (n) => String(n).padStart(2, "0");

export function localTime(t, withSeconds = true) {
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}${withSeconds ? `:${pad(d.getSeconds())}` : ""}`;
}

export function localDateTime(t) {
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${localTime(t)}`;
}

export const utc = (t) => new Date(t * 1000).toISOString().replace(".000Z", "Z");

/** A <time> element: local time as text, UTC on hover. */
export function timeEl(t, withDate = false) {
  const el = document.createElement("time");
  el.dateTime = utc(t);
  el.textContent = withDate ? localDateTime(t) : localTime(t);
  el.title = `${utc(t)} (UTC)`;
  return el;
}

/** [start, end) of the local day `yyyy-mm-dd`, in epoch seconds. */
export function dayRange(day) {
  const [y, m, d] = day.split("-").map(Number);
  return [new Date(y, m - 1, d).getTime() / 1000, new Date(y, m - 1, d + 1).getTime() / 1000];
}

export function today() {
  const d = new Date();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function duration(s) {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}
