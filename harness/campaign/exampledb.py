"""The campaign's example database: hypothesis' own, shared between shards.

``--example-db URL`` names it: ``redis://host:port/db`` (also ``rediss://``, ``unix://``) is
:class:`hypothesis.extra.redis.RedisExampleDatabase`; anything else is a directory
(:class:`hypothesis.database.DirectoryBasedExampleDatabase`, e.g. on a shared volume). The
default is ``<artifacts>/hypothesis-db``.

Hypothesis stores each failure it finds (and each smaller one while shrinking) under the
campaign's key, a hash of what makes stored choices replay the same scenario (the generation
options). The driver (:mod:`harness.campaign.driver`) uses it through :class:`SharedDatabase`:

- every entry under the key that this process neither wrote nor replayed yet is *unseen*
  (:meth:`SharedDatabase.unseen`); the driver replays unseen entries before it generates, and
  looks again between examples (every :data:`POLL_S`), so a failure one shard stored reaches
  the others that are running, not only those that start later;
- a replay runs on :meth:`SharedDatabase.replay_view`, without shrinking (the finder
  shrinks; an entry picked up while the finder still shrinks is reported as it was): hypothesis
  sees that one entry and nothing else, and its deletes are dropped (hypothesis deletes an entry that does not fail
  again; here that may be another implementation, a known bug this shard skips, or timing:
  the entry stays for the other shards);
- a database that fails (Redis down) never ends a campaign: the operation is skipped, logged
  once, and counted (:attr:`SharedDatabase.errors`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from harness.errors import InfraError, UsageError

__all__ = ["POLL_S", "SharedDatabase", "campaign_key", "describe_db", "open_example_db"]

log = logging.getLogger(__name__)
#: How often a generating campaign asks the database for failures stored by other shards.
POLL_S = 2.0
REDIS_PREFIX = b"faultrun-campaign:"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def is_redis_url(spec: str) -> bool:
    return urlsplit(spec).scheme in _REDIS_SCHEMES


def describe_db(spec: str) -> str:
    """``spec`` without a password (for campaign.json and the terminal)."""
    if not is_redis_url(spec):
        return str(Path(spec).resolve())
    u = urlsplit(spec)
    if u.password is None:
        return spec
    host = u.hostname or ""
    netloc = f"{u.username or ''}:***@{host}" + (f":{u.port}" if u.port else "")
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


def open_example_db(spec: str | Path) -> ExampleDatabase:
    """The database ``spec`` names (module docs). A Redis database is pinged first: an
    unreachable one is an :class:`~harness.errors.InfraError` (exit 3), a missing ``redis``
    package a :class:`~harness.errors.UsageError`."""
    text = str(spec)
    if not is_redis_url(text):
        return DirectoryBasedExampleDatabase(str(Path(text)))
    try:
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError as exc:  # pragma: no cover - redis is a dependency
        raise UsageError(f"--example-db {describe_db(text)}: needs the 'redis' package ({exc})") from exc
    try:
        client = redis.Redis.from_url(text, socket_timeout=10, socket_connect_timeout=10, health_check_interval=30)
        client.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise InfraError(f"example database {describe_db(text)}: {type(exc).__name__}: {exc}") from exc
    return RedisExampleDatabase(client, key_prefix=REDIS_PREFIX)


def campaign_key(digest: str) -> bytes:
    """The database key of a campaign with these generation options (``digest``)."""
    return b"faultrun-" + hashlib.sha256(digest.encode()).hexdigest()[:32].encode()


class SharedDatabase(ExampleDatabase):
    """Wraps the real database: failures never raise, and what this process wrote or replayed
    is remembered (:meth:`unseen`). ``key`` is the campaign's primary key."""

    def __init__(self, db: ExampleDatabase, key: bytes) -> None:
        super().__init__()
        self.db = db
        self.key = key
        self.seen: set[bytes] = set()
        self.errors = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SharedDatabase({self.db!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SharedDatabase) and other.db == self.db and other.key == self.key

    __hash__ = object.__hash__

    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            first = self.errors == 1
        (log.warning if first else log.debug)("example database %s: %s: %s: %s (the campaign goes on without it)",
                                              self.db, what, type(exc).__name__, exc)

    def save(self, key: bytes, value: bytes) -> None:
        if key == self.key:
            self.seen.add(value)
        try:
            self.db.save(key, value)
        except Exception as exc:
            self._failed("save", exc)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        try:
            return list(self.db.fetch(key))
        except Exception as exc:
            self._failed("fetch", exc)
            return []

    def delete(self, key: bytes, value: bytes) -> None:
        try:
            self.db.delete(key, value)
        except Exception as exc:
            self._failed("delete", exc)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        if dest == self.key:
            self.seen.add(value)
        try:
            self.db.move(src, dest, value)
        except Exception as exc:
            self._failed("move", exc)

    def unseen(self) -> list[bytes]:
        """Stored failures of this campaign that this process neither wrote nor replayed,
        shortest first (hypothesis' order: the most shrunk first)."""
        return sorted((v for v in self.fetch(self.key) if v not in self.seen), key=lambda v: (len(v), v))

    def replay_view(self, value: bytes) -> ExampleDatabase:
        """What hypothesis sees while it replays ``value`` (marked seen): that entry alone, and
        no deletes."""
        self.seen.add(value)
        return _ReplayView(self, value)


class _ReplayView(ExampleDatabase):
    def __init__(self, shared: SharedDatabase, value: bytes) -> None:
        super().__init__()
        self.shared = shared
        self.value = value

    def __repr__(self) -> str:
        return f"_ReplayView({self.shared!r})"

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return [self.value] if key == self.shared.key else []

    def save(self, key: bytes, value: bytes) -> None:
        self.shared.save(key, value)

    def delete(self, key: bytes, value: bytes) -> None:
        pass  # the entry stays for the other shards (module docs)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.shared.move(src, dest, value)

