"""Rules that involve several keys of config.json.

They read the file as written (after ``${ENV}`` substitution), not the validated models, so that they still run
when some value elsewhere is wrong: every error of a file is reported at once. A rule about a key that already
has an error stays silent.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from cctv_daemon.config.checks import Collector, fmt_num, join
from cctv_daemon.core import constants as c

SOURCES = ("rtsp", "webcam", "test")
S3_MAX_KEY_BYTES = 1024
# Longest key: {s3Path}/{camera}/{YYYY}/{MM}/{DD}/{camera}_{feed}_{start}_{end}.mp4 (see upload.object_key).
_STAMP = "20260131T235959Z"


def _given(obj: dict[str, Any], key: str) -> bool:
    return obj.get(key) is not None


def cross_checks(data: dict[str, Any], col: Collector) -> None:
    cams = data.get("cameras")
    cams = [(i, cam) for i, cam in enumerate(cams) if isinstance(cam, dict)] if isinstance(cams, list) else []
    for i, cam in cams:
        _camera(cam, f"cameras[{i}]", col)
    first: dict[str, int] = {}
    for i, cam in cams:
        name = cam.get("cameraName")
        if not isinstance(name, str):
            continue
        j = first.setdefault(name.casefold(), i)
        if j != i:
            col.add(f"cameras[{i}].cameraName",
                    f'duplicate name "{name}" (also used by cameras[{j}]; names are compared ignoring case)')
    storage, s3, sup = (data.get(k) for k in ("storageConfig", "s3Config", "supervisor"))
    if isinstance(storage, dict) and storage.get("clearAfterUpload") is True and s3 is None:
        col.add("storageConfig.clearAfterUpload", "clearAfterUpload needs s3Config (nothing is uploaded without it)")
    if isinstance(s3, dict):
        if _given(s3, "sseKmsKeyId") and s3.get("serverSideEncryption") != "aws:kms":
            col.add("s3Config.sseKmsKeyId", 'only used with serverSideEncryption "aws:kms"')
        _s3_key_length(s3, [cam for _, cam in cams], col)
    bad = col.paths()
    fleet = data.get("fleet")
    if isinstance(fleet, dict):
        _fleet(fleet, data.get("catalog"), bad, col)
    api = data.get("api")
    if isinstance(api, dict):
        _api(api, bad, col)
    if isinstance(sup, dict) and not {"supervisor.backoffBase", "supervisor.backoffCap"} & bad:
        base = sup.get("backoffBase", c.DEFAULT_BACKOFF_BASE_S)
        cap = sup.get("backoffCap", c.DEFAULT_BACKOFF_CAP_S)
        if cap < base:
            col.add("supervisor.backoffCap", f"must be >= backoffBase ({fmt_num(base)}) (got {fmt_num(cap)})")


SHARED_CATALOG_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb")


def shared_catalog(url: object) -> bool:
    """A catalog URL that several nodes can share (PostgreSQL, MySQL/MariaDB); SQLite (the default) is one node's."""
    return isinstance(url, str) and url.split(":", 1)[0].split("+", 1)[0].lower() in SHARED_CATALOG_SCHEMES


def _fleet(fleet: dict[str, Any], catalog: object, bad: set[str], col: Collector) -> None:
    shards, shard = fleet.get("shards", 1), fleet.get("shard")
    if "fleet.shards" in bad or not isinstance(shards, int):
        return
    if isinstance(shard, int) and "fleet.shard" not in bad and shard >= shards:
        col.add("fleet.shard", f"must be 0..{shards - 1} for fleet.shards {shards} (got {shard})")
    url = catalog.get("url") if isinstance(catalog, dict) else None
    if shards > 1 and "catalog.url" not in bad and not shared_catalog(url):
        col.add("fleet.shards", f"{shards} shards need a shared catalog (catalog.url postgresql://... or "
                                "mysql://...); a SQLite catalog is single-node: use fleet.shards 1")


def _camera(cam: dict[str, Any], path: str, col: Collector) -> None:
    def err(key: str, message: str) -> None:
        col.add(join(path, key), message)

    src = cam.get("source", "rtsp")
    if src == "rtsp":
        _rtsp(cam, path, col)
    elif src in SOURCES:
        for key in ("url", "ipAddress", "port", "path", "userName", "password", "rtspTransport"):
            if key in cam:
                err(key, f'not used by source "{src}"')
        if src == "webcam" and "device" not in cam:
            err("device", 'required for source "webcam" (e.g. "/dev/video0" or a DirectShow name)')
    if src != "webcam" and src in SOURCES and "device" in cam:
        err("device", f'not used by source "{src}"')


def _rtsp(cam: dict[str, Any], path: str, col: Collector) -> None:
    has_url, has_ip = _given(cam, "url"), _given(cam, "ipAddress")
    if has_url and has_ip:
        col.add(path, 'give either "url" or "ipAddress", not both')
    elif not has_url and not has_ip:
        col.add(path, 'source "rtsp" needs "url" or "ipAddress"')
    if has_url:
        for key in ("port", "path"):
            if key in cam:
                col.add(join(path, key), 'only used with "ipAddress" (put it in "url")')
    creds_conflict = False
    url = cam.get("url")
    if isinstance(url, str) and (_given(cam, "userName") or _given(cam, "password")):
        try:
            parts = urlsplit(url)
            inline = parts.username or parts.password
        except ValueError:
            inline = None
        if inline:
            creds_conflict = True
            col.add(join(path, "url"), "has credentials inline (user:pass@); remove them or remove userName/password")
    if _given(cam, "password") and not _given(cam, "userName") and not creds_conflict:
        col.add(join(path, "password"), "needs userName")


def s3_key_bytes(prefix: str, camera: str, feed: str) -> int:
    """The length in bytes of the longest S3 object key a segment of this camera gets."""
    file_name = f"{camera}_{feed}_{_STAMP}_{_STAMP}{c.SEGMENT_EXT}"
    parts = [prefix.strip("/"), camera, "2026", "01", "31", file_name]
    return len("/".join(p for p in parts if p).encode("utf-8"))


def _s3_key_length(s3: dict[str, Any], cams: list[dict[str, Any]], col: Collector) -> None:
    prefix = s3.get("s3Path", "")
    if not isinstance(prefix, str):
        return
    too_long: dict[str, int] = {}
    for cam in cams:
        name, feed = cam.get("cameraName"), cam.get("videoFeedId", cam.get("cameraName"))
        if isinstance(name, str) and isinstance(feed, str):
            n = s3_key_bytes(prefix, name, feed)
            if n > S3_MAX_KEY_BYTES:
                too_long[name] = n
    if too_long:
        longest = max(too_long.values())
        names = ", ".join(f'"{n}"' for n in too_long)
        col.add("s3Config.s3Path", f"makes the S3 object keys of camera(s) {names} up to {longest} bytes long;"
                f" S3 allows at most {S3_MAX_KEY_BYTES} (shorten s3Path by {longest - S3_MAX_KEY_BYTES} bytes)")


LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _api(api: dict[str, Any], bad: set[str], col: Collector) -> None:
    cert, key = _given(api, "tlsCert"), _given(api, "tlsKey")
    if cert != key:
        col.add("api.tlsKey" if cert else "api.tlsCert", "tlsCert and tlsKey go together (give both or neither)")
    host = api.get("host", c.DEFAULT_API_HOST)
    if "api.host" in bad or not isinstance(host, str) or is_loopback(host):
        return
    if not (cert and key) and api.get("behindTlsProxy") is not True:
        col.add("api.host", f'"{host}" is not a loopback address: serving the API beyond this machine needs TLS'
                ' (api.tlsCert and api.tlsKey) or a TLS proxy in front (api.behindTlsProxy: true)')
