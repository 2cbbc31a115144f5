"""catalog/export_remote.py on its own: the temporary folder (private, removed by close(), also after a failure),
the size check, and errors that name the segment and S3's error code but nothing else of the failure."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from cctv_daemon.catalog.export_remote import FetchError, RemoteFiles, describe
from cctv_daemon.catalog.rows import SegmentRow


class S3LikeError(Exception):
    """Shaped like botocore's ClientError (a `response` with the error code); its text holds a secret."""

    def __init__(self, code: str) -> None:
        super().__init__("secret-access-key-XYZ in a message")
        self.response = {"Error": {"Code": code}}


def rows(src: Path, n: int) -> list[tuple[SegmentRow, str]]:
    out = []
    for i in range(n):
        f = src / f"seg{i}.mp4"
        f.write_bytes(bytes([i]) * (1000 + i))
        out.append((SegmentRow(f"t1/2026/seg{i}.mp4", "t1", "f", float(i), i + 1.0, f.stat().st_size,
                               node_id="node-a"), f.name))
    return out


def test_fetches_into_a_private_folder_removed_on_close(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    src.mkdir()
    wanted = rows(src, 5)
    with RemoteFiles(lambda key, dest: shutil.copyfile(src / key, dest), tmp_path) as remote:
        got = remote.fetch(wanted)
        assert remote.folder is not None and stat.S_IMODE(remote.folder.stat().st_mode) == 0o700
        assert [got[r].read_bytes() for r, _k in wanted] == [(src / k).read_bytes() for _r, k in wanted]
        folder = remote.folder
    assert not folder.exists() and remote.fetched == 5


def test_a_failure_names_the_segment_and_code_only_and_close_removes_everything(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    src.mkdir()
    wanted = rows(src, 3)

    def download(key: str, dest: Path) -> None:
        if key == "seg1.mp4":
            raise S3LikeError("NoSuchKey")
        shutil.copyfile(src / key, dest)

    remote = RemoteFiles(download, tmp_path)
    with pytest.raises(FetchError) as err:
        remote.fetch(wanted)
    assert "t1/2026/seg1.mp4" in str(err.value) and "node-a" in str(err.value) and "NoSuchKey" in str(err.value)
    assert "secret" not in str(err.value)
    remote.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket"]


def test_a_size_unlike_the_catalogued_one_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    src.mkdir()
    wanted = rows(src, 1)
    (src / "seg0.mp4").write_bytes(b"short")
    with RemoteFiles(lambda key, dest: shutil.copyfile(src / key, dest), tmp_path) as remote, \
            pytest.raises(FetchError, match="has 5 bytes, the catalog says 1000"):
        remote.fetch(wanted)


def test_no_s3_config_says_so() -> None:
    with RemoteFiles(None) as remote, pytest.raises(FetchError, match="no s3Config"):
        remote.fetch([(SegmentRow("a.mp4", "t1", "f", 0.0, 1.0, 1, node_id="n"), "k")])
    assert describe(ValueError("x")) == "ValueError"


def test_an_api_export_stream_dropped_before_its_first_byte_removes_its_s3_copies(tmp_path: Path) -> None:
    """The client went away before the first byte: Starlette drops the stream unstarted (a generator never started
    runs no `finally`); the copies go with it."""
    import gc
    from typing import Any, cast

    from cctv_daemon.api import media

    src = tmp_path / "bucket"
    src.mkdir()
    remote = RemoteFiles(lambda key, dest: shutil.copyfile(src / key, dest), tmp_path)
    remote.fetch(rows(src, 2))
    folder = remote.folder
    assert folder is not None and folder.exists()
    stream = media.export_stream(cast(Any, None), cast(Any, None), media.ExportDigestState(), remote)
    del remote, stream
    gc.collect()
    assert not folder.exists()
