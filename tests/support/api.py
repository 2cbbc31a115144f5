"""Talking to a test daemon's HTTP API: where it listens ({stateDir}/api.json, written by the daemon) and its
tokens ({stateDir}/api-tokens.json), as the CLI reads them."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.daemon import DaemonProc, wait_for


class Api:
    def __init__(self, d: DaemonProc, timeout: float = 40) -> None:
        self.d = d
        info: dict[str, Any] = wait_for(lambda: self._info(), timeout, "the API listening (api.json)", proc=d.proc)
        self.url = str(info["url"])
        tokens = json.loads((d.state_dir / "api-tokens.json").read_text())
        self.admin_token, self.viewer_token = str(tokens["admin"]), str(tokens["viewer"])
        self.secrets = [self.admin_token, self.viewer_token, str(tokens["signing_key"])]

    def _info(self) -> dict[str, Any] | None:
        path = self.d.state_dir / "api.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("pid") == (self.d.proc.pid if self.d.proc else None) \
            else None

    def client(self, role: str | None = "admin", **kw: Any) -> httpx.Client:
        headers = {}
        if role is not None:
            headers["Authorization"] = f"Bearer {self.admin_token if role == 'admin' else self.viewer_token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def get(self, path: str, role: str | None = "admin", **kw: Any) -> httpx.Response:
        with self.client(role) as c:
            return c.get(path, **kw)

    def post(self, path: str, role: str | None = "admin", **kw: Any) -> httpx.Response:
        with self.client(role) as c:
            return c.post(path, **kw)

    def camera(self, name: str) -> dict[str, Any]:
        r = self.get(f"/api/cameras/{name}", "viewer")
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def segments(self, **params: Any) -> dict[str, Any]:
        r = self.get("/api/segments", "viewer", params=params)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data
