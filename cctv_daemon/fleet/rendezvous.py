"""Rendezvous (highest random weight) hashing of camera names onto shards.

Every node computes, for a camera, a score per shard; the shard with the highest score owns the camera, and the
others follow in falling score order (the camera's *rendezvous order*: who takes it when its owner is gone).
Adding a shard moves only the cameras the new shard now wins (about 1/N of them), all of them to the new shard;
removing one moves only its own cameras, each to the next shard in its order.

The scores must be the same on every node and every version of the program (a rolling upgrade runs two
versions at once): BLAKE2b of a fixed byte string, never Python's salted ``hash()``. Camera names are compared
case-insensitively, as the config compares them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

Shards = int | Iterable[int]


def score(camera: str, shard: int) -> int:
    """The camera's weight on ``shard``: a 64-bit integer, stable across processes, machines and versions."""
    key = f"{camera.lower()}\x00{shard}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8, person=b"cctv-shard").digest(), "big")


def _shard_ids(shards: Shards) -> list[int]:
    if isinstance(shards, int):
        if shards < 1:
            raise ValueError(f"shards must be at least 1 (got {shards})")
        return list(range(shards))
    ids = list(shards)
    if not ids:
        raise ValueError("no shards to choose from")
    return ids


def order(camera: str, shards: Shards) -> list[int]:
    """The shards in the camera's rendezvous order: its owner first, then who takes it over, and so on.
    ``shards`` is a count N (shards 0..N-1) or the shard ids to choose among (e.g. the live ones)."""
    return sorted(_shard_ids(shards), key=lambda s: (-score(camera, s), s))


def owner(camera: str, shards: Shards) -> int:
    """The shard that records ``camera`` among ``shards`` (a count N, or the shard ids to choose among)."""
    return max(_shard_ids(shards), key=lambda s: (score(camera, s), -s))
