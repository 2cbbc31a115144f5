"""Who this node is in the fleet: its shard (``fleet.shard``, else the number at the end of a StatefulSet pod
name such as ``cctv-3``) and its node id (``fleet.nodeId``, else the pod name, else the host name), checked
against ``fleet.shards``. Errors name the config key, as config errors do."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

_POD_NAME = re.compile(r"^(?P<set>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)-(?P<ordinal>\d{1,9})$")
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class FleetConfigError(ValueError):
    """A fleet setting that cannot work; the message starts with the config key."""


@dataclass(frozen=True)
class FleetIdentity:
    shards: int
    shard: int
    node_id: str


def shard_from_pod_name(name: str) -> int | None:
    """``cctv-3`` → 3 (the ordinal Kubernetes gives a StatefulSet's pods); None when ``name`` has no ordinal."""
    match = _POD_NAME.match(name.strip())
    return int(match.group("ordinal")) if match else None


def pod_name(env: Mapping[str, str] | None = None, hostname: str | None = None) -> str:
    """``POD_NAME`` (set from the downward API in deploy/kubernetes/statefulset.yaml), else the host name (which
    Kubernetes sets to the pod name too)."""
    env = os.environ if env is None else env
    return env.get("POD_NAME", "").strip() or (hostname if hostname is not None else socket.gethostname())


def identify(shards: int, shard: int | None = None, node_id: str | None = None,
             env: Mapping[str, str] | None = None, hostname: str | None = None) -> FleetIdentity:
    """This node's identity from ``fleet.shards``, ``fleet.shard`` and ``fleet.nodeId`` (None: not given)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise FleetConfigError(f"fleet.shards: must be a positive integer (got {shards!r})")
    name = pod_name(env, hostname)
    if shard is None and shards == 1:
        shard = 0  # one shard: nothing to choose, no pod name needed
        where = "fleet.shard (default 0)"
    elif shard is None:
        shard = shard_from_pod_name(name)
        if shard is None:
            raise FleetConfigError(
                f"fleet.shard: not given, and this pod/host name {name!r} does not end in -N "
                f"(a StatefulSet pod name such as cctv-3); set fleet.shard to 0..{shards - 1}")
        where = f"from the pod/host name {name!r}"
    else:
        where = "fleet.shard"
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
        raise FleetConfigError(f"fleet.shard: must be 0..{shards - 1} for fleet.shards {shards} "
                               f"(got {shard!r}, {where})")
    node = node_id if node_id is not None else name
    if not _NODE_ID.match(node):
        key = "fleet.nodeId" if node_id is not None else "fleet.nodeId (default: the pod/host name)"
        raise FleetConfigError(f"{key}: must be 1-63 of A-Z a-z 0-9 . _ - starting with a letter or digit "
                               f"(got {node!r})")
    return FleetIdentity(shards=shards, shard=shard, node_id=node)
