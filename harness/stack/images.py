"""``images.toml``: which implementation plays which role, and how to start it.

One top-level array per role (``client``, ``leader``, ``helper``, ``collector``), as in the
DAP interop test runner. An entry is either a runner-style string (a container image) or a
table::

    leader = ["us-west2-docker.pkg.dev/.../janus_interop_aggregator:0.7.x"]   # runner form

    [[leader]]                       # our form (TOML cannot mix both for one role)
    name = "reference"               # what --impl leader=NAME selects; the first is the default
    doc = "..."                      # one line for `faultrun --list`
    command = ["{python}", "-m", "dap.roles", "--role", "leader", "--port", "{port}",
               "--state-dir", "{state_dir}"]       # local backend
    env = { KEY = "value" }          # optional: environment (both backends)

    [[leader]]
    name = "janus"
    image = "us-west2-docker.pkg.dev/.../janus_interop_aggregator:0.7.x"   # docker backend
    port = 8080                      # container port of the interop API (default 8080)
    args = ["..."]                   # optional: the container's command (after its entrypoint)
    vdafs = ["Prio3Count", "Prio3Sum"]   # optional: the VDAF types it supports (absent: all)
    timing = { job_interval_ms = 1000 }  # optional, leaders only: how fast it works (Timing)

An entry may have both ``command`` and ``image`` (the shipped ``reference`` entries do): the
local backend runs the command, the docker backend the image. ``env`` applies to both.

Placeholders in ``command``: ``{python}`` (this interpreter), ``{port}`` (a free loopback
port; 8080 under ``--network netns``), ``{host}`` (127.0.0.1; under ``--network netns`` the role's
address in its namespace, docs/network.md), ``{state_dir}`` (the role's directory under the stack's
artifacts), ``{repo}`` (this checkout). A runner-style string gets the name
``<image basename>:<tag>``. Every error is one :class:`~harness.errors.ImagesError` line
naming the file, the line when known, and the key.

``vdafs`` lists the interop VDAF types (:data:`dap.vdaf.params.VDAF_TYPES`) an
implementation supports; ``faultrun`` leaves a scenario whose VDAF a selected implementation
lacks out of the run as *not applicable* (:func:`not_applicable`). ``timing`` (a Leader's)
says how fast it works, so scenarios wait as long as the target needs instead of assuming
the reference Leader's pace (:class:`Timing`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs

from dap.vdaf.params import VDAF_TYPES
from harness import REPO
from harness.errors import ImagesError, UsageError

__all__ = ["DEFAULT_IMAGES", "PLACEHOLDERS", "ROLES", "VDAF_TYPES", "ImageEntry", "Images", "Timing", "load_images",
           "not_applicable", "parse_images", "parse_impl"]

ROLES = ("leader", "helper", "client", "collector")
PLACEHOLDERS = ("python", "port", "host", "state_dir", "repo")
DEFAULT_IMAGES = REPO / "images.toml"
_ENTRY_KEYS = {"name", "doc", "command", "env", "image", "port", "args", "needs_env", "vdafs", "timing"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")


@attrs.frozen
class Timing:
    """How fast a Leader works, as far as scenarios must wait for it (``timing`` in images.toml).

    The defaults are deliberately slow (an implementation that declares nothing gets waited
    for): the reference Leader declares 200 / 1000 / 8000, a local Janus 0.7 1000 / 1000 /
    18000 (docs/images.md)."""

    #: the longest an uploaded report waits before the Leader puts it in an aggregation job:
    #: a ``Pause(job_intervals=n)`` waits n of these, so uploads before and after it land in
    #: different jobs; also the least a collection is polled before it may be judged not_ready
    job_interval_ms: int = 1000
    #: the Leader's timeout on one request to the Helper (the catalogue's delay-beyond-timeout
    #: faults hold an answer longer than this; a test keeps the shipped entries below them)
    request_timeout_ms: int = 1000
    #: how long the Leader keeps re-sending a failing request to the Helper before it gives
    #: the job up (the reference: --retry-budget; Janus: attempts x (timeout + lease + skew))
    give_up_ms: int = 20_000

    #: the per-scenario budget covers this many give-ups (a failing aggregation job, then a
    #: failing aggregate share) plus :data:`TIMEOUT_SLACK_S` for the rest of the workload
    GIVE_UPS: ClassVar[int] = 2
    TIMEOUT_SLACK_S: ClassVar[float] = 10.0

    def scenario_timeout_s(self, base_s: float) -> float:
        """A per-scenario timeout for this Leader: ``base_s``, or longer when the Leader may
        take longer to give up failing requests twice (``GIVE_UPS x give_up_ms`` + 10 s)."""
        return max(base_s, self.GIVE_UPS * self.give_up_ms / 1000 + self.TIMEOUT_SLACK_S)

    def pause_s(self, ms: int, job_intervals: int = 0) -> float:
        """A workload pause: ``ms`` plus ``job_intervals`` of this Leader's job intervals."""
        return (ms + job_intervals * self.job_interval_ms) / 1000


_TIMING_KEYS = tuple(a.name for a in attrs.fields(Timing))


@attrs.frozen
class ImageEntry:
    """One implementation of one role: a local ``command`` or a container ``image``."""

    role: str
    name: str
    command: tuple[str, ...] | None = None
    image: str | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)
    port: int = 8080
    doc: str = ""
    args: tuple[str, ...] | None = None
    #: environment variables the local ``command`` needs (e.g. a user's build: ``JANUS_BIN_DIR``)
    needs_env: tuple[str, ...] = ()
    #: the interop VDAF types it supports (None: every type the harness knows)
    vdafs: tuple[str, ...] | None = None
    #: how fast it works (a Leader's; :class:`Timing`)
    timing: Timing = Timing()

    def supports(self, vdaf_type: str) -> bool:
        """Whether it supports VDAF type ``vdaf_type`` (``images.toml`` ``vdafs``; absent: all)."""
        return self.vdafs is None or vdaf_type in self.vdafs

    def missing(self, backend: str, environ: Mapping[str, str] | None = None) -> str | None:
        """The one thing this machine lacks to run the entry under ``backend``, in words
        (``JANUS_BIN_DIR not set``), or None if it can run here."""
        if backend not in self.backends:
            return f"no {'command' if backend == 'local' else 'image'} entry for the {backend} backend"
        if backend == "local":
            env = os.environ if environ is None else environ
            for name in self.needs_env:
                if not env.get(name):
                    return f"{name} not set"
        return None

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends that can run this entry: ``local`` (a command), ``docker`` (an image)."""
        return (("local",) if self.command is not None else ()) + (("docker",) if self.image is not None else ())

    @property
    def kind(self) -> str:
        """``local``, ``docker``, or ``local+docker`` (an entry with both a command and an image)."""
        return "+".join(self.backends)

    def render(self, **values: str) -> list[str]:
        """The command with placeholders filled in (local entries only)."""
        assert self.command is not None
        return [part.format(**values) for part in self.command]


@attrs.frozen
class Images:
    path: Path | None
    entries: Mapping[str, tuple[ImageEntry, ...]]

    def default(self, role: str) -> ImageEntry:
        return self.entries[role][0]

    def names(self, role: str) -> list[str]:
        return [e.name for e in self.entries[role]]

    def select(self, role: str, name: str | None = None) -> ImageEntry:
        """The entry ``name`` of ``role`` (default: the first). Unknown: ImagesError with near names."""
        if role not in self.entries:
            raise ImagesError(f"unknown role {role!r} (roles: {', '.join(ROLES)})", path=self.path)
        if name is None:
            return self.default(role)
        for e in self.entries[role]:
            if e.name == name:
                return e
        import difflib
        near = difflib.get_close_matches(name, self.names(role), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(near)}?" if near else f"known: {', '.join(self.names(role))}"
        raise ImagesError(f"no {role} implementation named {name!r}; {hint}", path=self.path, key=role)


def _line_of(text: str, needle: str) -> int | None:
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    return None


def parse_images(text: str, path: Path | str | None = None) -> Images:
    """Parse images.toml text; ``path`` only names the file in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else None
        raise ImagesError(re.sub(r"\s*\(at line \d+, column \d+\)", "", msg) or "invalid TOML", path=path,
                          line=line) from exc
    unknown = sorted(set(data) - set(ROLES))
    if unknown:
        raise ImagesError(f"unknown role (roles: {', '.join(ROLES)})", path=path, line=_line_of(text, unknown[0]),
                          key=unknown[0])
    entries: dict[str, tuple[ImageEntry, ...]] = {}
    for role in ROLES:
        raw = data.get(role)
        if raw is None:
            raise ImagesError("missing: every role needs at least one entry", path=path, key=role)
        if not isinstance(raw, list) or not raw:
            raise ImagesError("must be a non-empty array of image strings or [[tables]]", path=path,
                              line=_line_of(text, role), key=role)
        out: list[ImageEntry] = []
        for i, item in enumerate(raw):
            out.append(_entry(role, i, item, text, path))
        seen: set[str] = set()
        for e in out:
            if e.name in seen:
                raise ImagesError(f"duplicate name {e.name!r}", path=path, line=_line_of(text, f'"{e.name}"'),
                                  key=f"{role}.name")
            seen.add(e.name)
        entries[role] = tuple(out)
    return Images(Path(path) if path is not None else None, entries)


def _entry(role: str, i: int, item: Any, text: str, path: Any) -> ImageEntry:
    where = f"{role}[{i}]"
    if isinstance(item, str):
        if not item.strip():
            raise ImagesError("empty image name", path=path, line=_line_of(text, role), key=where)
        base = item.rsplit("/", 1)[-1]
        return ImageEntry(role=role, name=base, image=item, doc=f"container image {item}")
    if not isinstance(item, dict):
        raise ImagesError(f"expected an image string or a table, got {type(item).__name__}", path=path,
                          line=_line_of(text, role), key=where)
    name = item.get("name")
    line = _line_of(text, f'"{name}"') if isinstance(name, str) else _line_of(text, f"[[{role}]]")
    unknown = sorted(set(item) - _ENTRY_KEYS)
    if unknown:
        raise ImagesError(f"unknown key (known: {', '.join(sorted(_ENTRY_KEYS))})", path=path,
                          line=_line_of(text, unknown[0]) or line, key=f"{where}.{unknown[0]}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ImagesError("required: a name of letters, digits and ._:@/+-", path=path, line=line, key=f"{where}.name")
    where = f"{role}.{name}"
    command, image = item.get("command"), item.get("image")
    if command is None and image is None:
        raise ImagesError("needs 'command' (local backend) or 'image' (docker backend), or both", path=path,
                          line=line, key=where)
    args = item.get("args")
    if args is not None:
        if image is None:
            raise ImagesError("'args' (the container's command) needs 'image'", path=path,
                              line=_line_of(text, "args") or line, key=f"{where}.args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ImagesError("must be an array of strings", path=path, line=_line_of(text, "args") or line,
                              key=f"{where}.args")
    if command is not None:
        if (not isinstance(command, list) or not command
                or not all(isinstance(c, str) for c in command)):
            raise ImagesError("must be a non-empty array of strings", path=path,
                              line=_line_of(text, "command") or line, key=f"{where}.command")
        for part in command:
            try:
                part.format(**{p: "" for p in PLACEHOLDERS})
            except (KeyError, IndexError, ValueError) as exc:
                raise ImagesError(f"bad placeholder in {part!r} (known: "
                                  f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})", path=path,
                                  line=_line_of(text, part) or line, key=f"{where}.command") from exc
        if not any("{port}" in part for part in command):
            raise ImagesError("must contain {port} (the harness picks a free port)", path=path,
                              line=_line_of(text, "command") or line, key=f"{where}.command")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise ImagesError("must be a non-empty string", path=path, line=line, key=f"{where}.image")
    env = item.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ImagesError("must be a table of strings", path=path, line=_line_of(text, "env") or line,
                          key=f"{where}.env")
    port = item.get("port", 8080)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ImagesError("must be a TCP port number", path=path, line=line, key=f"{where}.port")
    doc = item.get("doc", "")
    if not isinstance(doc, str):
        raise ImagesError("must be a string", path=path, line=line, key=f"{where}.doc")
    needs = item.get("needs_env", [])
    if not isinstance(needs, list) or not all(isinstance(n, str) and n for n in needs):
        raise ImagesError("must be an array of environment variable names", path=path,
                          line=_line_of(text, "needs_env") or line, key=f"{where}.needs_env")
    vdafs = item.get("vdafs")
    if vdafs is not None:
        if not isinstance(vdafs, list) or not vdafs or not all(isinstance(x, str) for x in vdafs):
            raise ImagesError(f"must be a non-empty array of VDAF types (known: {', '.join(VDAF_TYPES)})",
                              path=path, line=_line_of(text, "vdafs") or line, key=f"{where}.vdafs")
        unknown_vdafs = [x for x in vdafs if x not in VDAF_TYPES]
        if unknown_vdafs:
            raise ImagesError(f"unknown VDAF type {unknown_vdafs[0]!r} (known: {', '.join(VDAF_TYPES)})", path=path,
                              line=_line_of(text, "vdafs") or line, key=f"{where}.vdafs")
    return ImageEntry(role=role, name=name, command=tuple(command) if command is not None else None, image=image,
                      env=dict(env), port=port, doc=doc, args=tuple(args) if args is not None else None,
                      needs_env=tuple(needs), vdafs=tuple(dict.fromkeys(vdafs)) if vdafs is not None else None,
                      timing=_timing(role, item.get("timing"), text, path, line, where))


def _timing(role: str, raw: Any, text: str, path: Any, line: int | None, where: str) -> Timing:
    if raw is None:
        return Timing()
    at = _line_of(text, "timing") or line
    if role != "leader":
        raise ImagesError("only a Leader's timing matters to the scenarios (it creates the jobs and retries)",
                          path=path, line=at, key=f"{where}.timing")
    if not isinstance(raw, dict):
        raise ImagesError(f"must be a table of {', '.join(_TIMING_KEYS)}", path=path, line=at, key=f"{where}.timing")
    unknown = sorted(set(raw) - set(_TIMING_KEYS))
    if unknown:
        raise ImagesError(f"unknown key (known: {', '.join(_TIMING_KEYS)})", path=path, line=at,
                          key=f"{where}.timing.{unknown[0]}")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ImagesError("must be a positive integer (milliseconds)", path=path, line=at,
                              key=f"{where}.timing.{key}")
    return Timing(**raw)


def not_applicable(impl: Mapping[str, ImageEntry], vdaf_type: str) -> str | None:
    """Why a scenario of VDAF ``vdaf_type`` cannot run on these implementations (role ->
    entry), in words (``leader janus does not support Poplar1 (images.toml vdafs)``), or None."""
    lacking = [f"{role} {entry.name}" for role, entry in impl.items() if not entry.supports(vdaf_type)]
    if not lacking:
        return None
    who = ", ".join(lacking[:-1]) + (" and " if len(lacking) > 1 else "") + lacking[-1]
    return f"{who} {'does' if len(lacking) == 1 else 'do'} not support {vdaf_type} (images.toml vdafs)"


def load_images(path: Path | str | None = None) -> Images:
    """Read images.toml (default: the one in this checkout)."""
    p = Path(path) if path is not None else DEFAULT_IMAGES
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImagesError("file not found", path=p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImagesError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", path=p) from exc
    return parse_images(text, p)




def parse_impl(texts: Iterable[str], *, option: str = "--impl") -> dict[str, list[str]]:
    """Implementation choices -> role -> entry names, in order (the one parser of ``--impl``,
    ``--matrix`` filters and the pytest plugin's ``--dap-impl``).

    Each text is ``ROLE=NAME[,NAME...]`` and may hold several roles: a comma-separated item
    with ``=`` starts a role, one without adds a name to the role before it
    (``leader=janus,reference`` or ``leader=X,helper=Y``). ROLE is one of :data:`ROLES` or
    ``all``. A role named twice, an empty name or an unknown role is a UsageError (one line).
    """
    out: dict[str, list[str]] = {}
    for text in texts:
        role: str | None = None
        for item in (x.strip() for x in text.split(",")):
            name = item
            if "=" in item:
                role, _, name = (p.strip() for p in item.partition("="))
                if role not in (*ROLES, "all"):
                    raise UsageError(f"{option} {role}=...: unknown role (roles: {', '.join(ROLES)}, all)")
                if role in out:
                    raise UsageError(f"{option} {role}= given twice")
                out[role] = []
            if role is None or not name:
                raise UsageError(f"{option}: expected ROLE=NAME[,NAME...] (e.g. leader=reference or all=reference), "
                                 f"got {text!r}")
            if name not in out[role]:
                out[role].append(name)
    return out
