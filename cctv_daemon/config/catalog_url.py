"""`catalog.url` read without connecting: which driver its scheme means, whether it names a host and a database,
and how to show it (the password hidden). In config/ so that the config's validation needs nothing of catalog/
(which imports this). SQLAlchemy's URL parser is imported when a URL is parsed, not with the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cctv_daemon.config.checks import redact_url
from cctv_daemon.core.constants import REDACTED

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


class CatalogError(RuntimeError):
    """The catalog database cannot be used as configured (cli/main.py reports these as exit 2)."""


class CatalogUrlError(CatalogError, ValueError):
    """A `catalog.url` that cannot be used (not a URL, unknown scheme, no host or database)."""


KEY = "catalog.url"
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "postgresql+psycopg": None,
            "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql", "mysql+pymysql": None,
            "mariadb+pymysql": "mysql+pymysql", "sqlite": None}


def hide(text: str, password: str | None) -> str:
    """`text` with a URL's password and `password` replaced by ***."""
    out = redact_url(text) if "://" in text else text
    return out.replace(password, REDACTED) if password and len(password) >= 3 else out


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL of a `catalog.url` (the driver chosen from its scheme). CatalogUrlError when unusable."""
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise CatalogUrlError(f"{KEY}: not a database URL (got {hide(url, None)!r}; e.g. "
                              "postgresql://user:${PASSWORD}@host/db, mysql://…, sqlite:///path)") from None
    scheme = parsed.drivername.lower()
    if scheme not in _DRIVERS:
        raise CatalogUrlError(f"{KEY}: unknown scheme {scheme!r} (use postgresql://, mysql://, mariadb:// or "
                              "sqlite:///path)")
    driver = _DRIVERS[scheme]
    if driver is not None:
        parsed = parsed.set(drivername=driver)
    if scheme == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise CatalogUrlError(f"{KEY}: a sqlite URL needs a file path (sqlite:////abs/path/catalog.sqlite3)")
    elif not parsed.host and not parsed.query.get("host") and not parsed.query.get("unix_socket"):
        raise CatalogUrlError(f"{KEY}: must include a host (got {safe_url(url)!r})")
    elif not parsed.database:
        raise CatalogUrlError(f"{KEY}: must name a database (…/DBNAME) (got {safe_url(url)!r})")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL for logs, status and errors: the password hidden."""
    from sqlalchemy import exc
    from sqlalchemy.engine import URL, make_url

    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (exc.ArgumentError, ValueError):
        return hide(url, None)
