"""API credentials (signing, one-time links, CSRF), segment ids, and a recording marked keep protecting its
segments from retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cctv_daemon.api import auth, ids
from cctv_daemon.catalog import labels
from cctv_daemon.catalog.store import Catalog, SegmentRow


def test_tokens_are_made_once_0600_and_distinct(tmp_path: Path) -> None:
    t1 = auth.load_or_create(tmp_path)
    t2 = auth.load_or_create(tmp_path)
    assert t1 == t2 and len({t1.viewer, t1.admin, t1.key.decode()}) == 3
    assert os.stat(auth.tokens_path(tmp_path)).st_mode & 0o777 == 0o600
    assert t1.role_of_bearer(t1.admin) == "admin" and t1.role_of_bearer(t1.viewer) == "viewer"
    assert t1.role_of_bearer("") is None and t1.role_of_bearer(t1.admin + "x") is None


def test_signed_values_expire_and_are_bound_to_their_purpose(tmp_path: Path) -> None:
    t = auth.load_or_create(tmp_path)
    v = auth.sign(t.key, "video", {"r": "segment:x", "exp": time.time() + 60})
    assert auth.verify(t.key, "video", v) is not None
    assert auth.verify(t.key, "session", v) is None  # another purpose
    assert auth.verify(b"other", "video", v) is None
    assert auth.verify(t.key, "video", v[:-2] + "AA") is None
    old = auth.sign(t.key, "video", {"r": "segment:x", "exp": time.time() - 1})
    assert auth.verify(t.key, "video", old) is None
    for junk in ("", ".", "a.b", "%%%.###", "x" * 5000):
        assert auth.verify(t.key, "video", junk) is None


def test_video_urls_live_12_hours(tmp_path: Path) -> None:
    t = auth.load_or_create(tmp_path)
    now = time.time()
    sig = auth.video_signature(t, "segment:x")
    assert auth.verify(t.key, "video", sig, now=now + 12 * 3600 - 60) is not None
    assert auth.verify(t.key, "video", sig, now=now + 12 * 3600 + 60) is None


def test_signin_codes_work_once(tmp_path: Path) -> None:
    t = auth.load_or_create(tmp_path)
    payload = auth.verify(t.key, "signin", auth.signin_code(t, "viewer"))
    assert payload is not None and payload["role"] == "viewer"
    nonces = auth.UsedNonces()
    assert nonces.first_use(str(payload["nonce"]), float(str(payload["exp"])))
    assert not nonces.first_use(str(payload["nonce"]), float(str(payload["exp"])))
    s1, s2 = auth.session_value(t, "admin"), auth.session_value(t, "admin")
    assert auth.csrf_token(t, s1) != auth.csrf_token(t, s2)


def test_segment_ids_are_opaque_stable_and_reject_junk(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3", tmp_path)
    row = SegmentRow("gate/2026-01-01/gate_gate_a_b.mp4", "gate", "gate", 1767225600.25, 1767225610.5, 10)
    cat.add_rows([row])
    sid = ids.segment_id(row)
    assert "/" not in sid and "mp4" not in sid and ids.segment_id(row) == sid
    found = ids.find(cat, sid)
    assert found is not None and found.path == row.path
    for bad in ("..", "../../etc/passwd", "", "x" * 300, "Li4vLi4vZXRjL3Bhc3N3ZA", "Li4vZXRjfDF8Mg"):
        assert ids.find(cat, bad) is None


def test_a_kept_recording_is_skipped_by_retention_candidates(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.sqlite3", tmp_path)
    labels.ensure_table(cat)
    rows = [SegmentRow(f"cam/d/s{i}.mp4", "cam", "cam", 1000.0 + 10 * i, 1010.0 + 10 * i, 5) for i in range(5)]
    cat.add_rows(rows)
    rec = labels.add(cat, "cam", "INC-1", 1000.0, 1020.0)  # covers s0 and s1
    assert [r.path for r in cat.oldest(limit=2)] == ["cam/d/s0.mp4", "cam/d/s1.mp4"]
    labels.set_keep(cat, rec.id, True)
    assert [r.path for r in cat.oldest(limit=2)] == ["cam/d/s2.mp4", "cam/d/s3.mp4"]
    assert labels.labels_of(rows[1], labels.find(cat, label="INC-1")) == ["INC-1"]
    assert labels.labels_of(rows[2], labels.find(cat, label="INC-1")) == []
    labels.set_keep(cat, rec.id, False)
    assert cat.oldest(limit=1)[0].path == "cam/d/s0.mp4"
