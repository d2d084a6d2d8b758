"""Network namespaces for one run: every role and the fault proxy on its own host, linked
through a router namespace the harness controls (``faultrun --network netns``, docs/network.md).

::

                          root namespace: the harness (interop API calls, control channel)
                                 │ frn<pid>x<k>   10.213.N.1/30   (one veth into the topology)
                                 │
       ┌─────────────────────────┴─ router (frn-…-router): ip_forward, the packet filter ──┐
       │ r-mgmt .2   r-leader .5   r-helper .9   r-client .13   r-collector .17  r-proxy .21 │
       └──────────────┬─────────────┬──────────────┬──────────────┬───────────────┬─────────┘
                 eth0 .6        eth0 .10      eth0 .14        eth0 .18        eth0 .22
                   leader        helper        client         collector       proxy (mitmdump)

Every DAP link goes source -> router -> proxy -> router -> target, so each crosses the
router twice; network rules (:mod:`harness.stack.netfaults`) act in the router on the segment
between the link's source and the proxy's listener for that link. Addresses come from
10.213.N.0/24 (N free on this host, taken under a lock); each namespace routes only that /24
(no default route, no NAT), so no address outside the run's namespaces is ever reachable.

Names carry the owner: namespaces ``frn-<pid>-<start>-<k>-<role>`` (pid and start time of
the harness process, k its k-th topology), the root-side veth ``frn<pid>x<k>``.
:meth:`Topology.destroy` kills every process left in the namespaces and deletes them (which
deletes their veths and every iptables rule and qdisc inside); :func:`sweep` does the same for
the topologies of a harness that is gone (kill -9), at the next ``Stack.start``.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from harness.errors import BackendError, UsageError
from harness.stack.lifetime import owner_alive, owner_labels

__all__ = ["CONTROL_PORT", "LINK_PORTS", "NETNS_DIR", "ROLE_PORT", "ROLES", "Topology", "missing_requirement",
           "sweep"]

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
#: the hosts of a topology (the router is extra)
ROLES = ("leader", "helper", "client", "collector", "proxy")
#: every role listens here in its own namespace (no port can be taken: the namespace is new)
ROLE_PORT = 8080
#: the fault proxy's listener per link, and its control channel, in the proxy namespace
LINK_PORTS = {"client->leader": 8081, "collector->leader": 8082, "leader->helper": 8083}
CONTROL_PORT = 8090
_NET = "10.213"
#: third octet range a topology may take
_NETS = range(1, 255)
#: the /30 of each veth pair in 10.213.N.0/24: (router side, host side) last octets
_PAIRS = {"mgmt": (2, 1), "leader": (5, 6), "helper": (9, 10), "client": (13, 14), "collector": (17, 18),
          "proxy": (21, 22)}
_NS_RE = re.compile(r"^frn-(\d+)-(\d+)-(\d+)-([a-z]+)$")
_LINK_RE = re.compile(r"^frn(\d+)x(\d+)$")
_counter = itertools.count()


def missing_requirement() -> str | None:
    """Why this process cannot build namespaces, in one line (None: it can)."""
    if shutil.which("ip") is None:
        return "--network netns needs iproute2's ip command (apt-get install iproute2)"
    if os.geteuid() != 0 and not _has_cap_net_admin():
        return ("--network netns needs root or CAP_NET_ADMIN (it creates network namespaces, veth pairs and "
                "packet-filter rules); run faultrun as root, or use the default loopback network")
    return None


def _has_cap_net_admin() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 12))
    except (OSError, ValueError):
        pass
    return False


def _run(cmd: Sequence[str], *, stdin: str | None = None, check: bool = True,
         timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        what = " ".join(cmd[:6]) + (" ..." if len(cmd) > 6 else "")
        err = (r.stderr or r.stdout).strip().splitlines()
        raise BackendError(f"{what}: {err[-1] if err else f'exit {r.returncode}'}", role="network")
    return r


def _batch(lines: Sequence[str], netns: str | None = None) -> None:
    """Several ``ip`` commands in one process (``ip [-n NS] -batch -``)."""
    _run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], stdin="\n".join(lines) + "\n")


def _owner_tag() -> str:
    """``<pid>-<start time>`` of this process (as the container owner label, with '-')."""
    return next(iter(owner_labels().values())).replace(":", "-")


def _lock_path() -> Path:
    return Path(tempfile.gettempdir()) / f"dap-faultrun-{os.getuid()}" / "netns.lock"


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    path = _lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _nets_in_use() -> set[int]:
    r = _run(["ip", "-4", "-o", "addr", "show"], check=False)
    return {int(m.group(1)) for m in re.finditer(rf"inet {re.escape(_NET)}\.(\d+)\.\d+/", r.stdout)}


@attrs.define(eq=False)
class Topology:
    """One run's namespaces and veth pairs. ``create()`` builds it, ``destroy()`` removes all of it."""

    tag: str = attrs.field(factory=_owner_tag)
    k: int = attrs.field(factory=lambda: next(_counter))
    net: int = 0
    created: list[str] = attrs.field(factory=list)
    mgmt_if: str = ""
    _destroyed: bool = False

    # --- names and addresses --------------------------------------------------------------------

    def ns(self, role: str) -> str:
        """The namespace of ``role`` (or ``router``)."""
        return f"frn-{self.tag}-{self.k}-{role}"

    def addr(self, role: str) -> str:
        """The address of ``role`` on its veth (``mgmt``: the harness's side in the root namespace)."""
        return f"{_NET}.{self.net}.{_PAIRS[role][1]}"

    def router_addr(self, role: str) -> str:
        return f"{_NET}.{self.net}.{_PAIRS[role][0]}"

    @staticmethod
    def router_if(role: str) -> str:
        """The router's interface toward ``role``."""
        return f"r-{role}"

    @property
    def subnet(self) -> str:
        return f"{_NET}.{self.net}.0/24"

    @property
    def router(self) -> str:
        return self.ns("router")

    def exec_prefix(self, role: str) -> list[str]:
        """Run a command in ``role``'s namespace (``ip netns exec``: it execs, the pid stays)."""
        return ["ip", "netns", "exec", self.ns(role)]

    def run(self, role: str, cmd: Sequence[str], *, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a short command (iptables, tc) in ``role``'s namespace."""
        return _run([*self.exec_prefix(role), *cmd], stdin=stdin, check=check)

    # --- lifecycle --------------------------------------------------------------------------------

    def create(self) -> Topology:
        """Build the namespaces, veth pairs, addresses and routes. On failure, removes what it
        made and raises BackendError."""
        why = missing_requirement()
        if why is not None:
            raise UsageError(why)
        t0 = time.monotonic()
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        log.info("netns topology %s-%d (%s) up in %.2f s", self.tag, self.k, self.subnet, time.monotonic() - t0)
        return self

    def _create(self) -> None:
        pid = self.tag.split("-")[0]
        self.mgmt_if = f"frn{pid}x{self.k}"
        hosts = [*ROLES, "router"]
        self.created = [self.ns(h) for h in hosts]
        _batch([f"netns add {self.ns(h)}" for h in hosts])
        router = self.router
        _batch([f"link add eth0 netns {self.ns(r)} type veth peer name {self.router_if(r)} netns {router}"
                for r in ROLES])
        with _allocation_lock():  # the subnet: free on this host, taken before anyone else looks
            used = _nets_in_use()
            free = [n for n in _NETS if n not in used]
            if not free:
                raise BackendError(f"no free {_NET}.N.0/24 for a netns topology (all in use)", role="network")
            self.net = free[0]
            _batch([f"link add {self.mgmt_if} type veth peer name {self.router_if('mgmt')} netns {router}",
                    f"addr add {self.addr('mgmt')}/30 dev {self.mgmt_if}",
                    f"link set {self.mgmt_if} up"])
        for r in ROLES:
            _batch(["link set lo up", f"addr add {self.addr(r)}/30 dev eth0", "link set eth0 up",
                    f"route add {self.subnet} via {self.router_addr(r)} dev eth0"], netns=self.ns(r))
        _batch(["link set lo up",
                *(x for r in ("mgmt", *ROLES) for x in (f"addr add {self.router_addr(r)}/30 dev {self.router_if(r)}",
                                                       f"link set {self.router_if(r)} up"))], netns=router)
        _run(["ip", "route", "add", self.subnet, "via", self.router_addr("mgmt"), "dev", self.mgmt_if])
        self.run("router", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        # conntrack on from the start (the blackhole tells old connections from new ones by it)
        self.run("router", ["iptables", "-w", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID",
                            "-j", "ACCEPT"])

    def destroy(self) -> None:
        """Kill every process left in the namespaces, delete them (their veths, iptables rules
        and qdiscs go with them) and the root-side veth. Never raises; idempotent."""
        if self._destroyed:
            return
        self._destroyed = True
        _remove(self.created, [self.mgmt_if] if self.mgmt_if else [])
        self.created = []


def _ns_pids(name: str) -> list[int]:
    r = _run(["ip", "netns", "pids", name], check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def _remove(namespaces: Sequence[str], links: Sequence[str]) -> None:
    for name in namespaces:
        for _ in range(3):
            pids = _ns_pids(name)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
    if namespaces:
        r = _run(["ip", "-force", "-batch", "-"], stdin="".join(f"netns del {n}\n" for n in namespaces), check=False)
        if r.returncode != 0:
            log.debug("netns del: %s", r.stderr.strip())
    for link in links:  # gone with the router namespace, unless that one never got it
        if Path(f"/sys/class/net/{link}").exists():
            _run(["ip", "link", "del", link], check=False)


def _listed_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def sweep() -> list[str]:
    """Remove the namespaces (and root-side veths) of harness processes that are gone; one
    line per removed topology. Cheap when there is nothing to do (two directory listings)."""
    owners: dict[tuple[str, str, str], list[str]] = {}
    for name in _listed_namespaces():
        m = _NS_RE.match(name)
        if m:
            owners.setdefault((m.group(1), m.group(2), m.group(3)), []).append(name)
    removed = []
    live_keys = set()
    for (pid, start, k), names in owners.items():
        if owner_alive(f"{pid}:{start}"):
            live_keys.add((pid, k))
            continue
        _remove(names, [f"frn{pid}x{k}"])
        removed.append(f"netns topology of harness pid {pid} (gone): {len(names)} namespaces")
    try:
        links = os.listdir("/sys/class/net")
    except OSError:
        links = []
    for link in links:
        m = _LINK_RE.match(link)
        if m and (m.group(1), m.group(2)) not in live_keys:
            _run(["ip", "link", "del", link], check=False)
            removed.append(f"veth {link} of harness pid {m.group(1)} (gone)")
    if removed:
        log.warning("removed network leftovers of a harness that died: %s", "; ".join(removed))
    return removed
