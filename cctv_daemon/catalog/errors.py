"""The catalog's errors that commands report as a usage/config problem (exit 2): each message names `catalog.url`
and never shows its password. Imports nothing heavy (cli/main.py catches these for every command)."""

from __future__ import annotations

from cctv_daemon.config.catalog_url import CatalogError, CatalogUrlError

__all__ = ["CatalogDamagedError", "CatalogError", "CatalogOpenError", "CatalogUrlError", "SchemaError"]


class CatalogOpenError(CatalogError):
    """The catalog database cannot be reached or refuses us (connection error, bad credentials)."""


class SchemaError(CatalogError):
    """The catalog's schema cannot be used by this program (made by a newer one)."""


class CatalogDamagedError(CatalogError):
    """A read command found the SQLite catalog file damaged (not a database, corrupt). Read commands never repair:
    the daemon moves the file aside at its next start, or `check --rebuild` does now. A runtime failure (exit 1)."""
