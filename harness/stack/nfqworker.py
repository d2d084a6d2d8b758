"""The packet worker of the netns network: NFQUEUE decisions for loss, latency, reordering,
duplication and resets (docs/network.md). Runs in a topology's router namespace::

    ip netns exec frn-...-router python -m harness.stack.nfqworker --queue 0

The router's packet filter queues the packets of active network rules to queue 0
(``harness.stack.netfaults``); this process decides each one. It is driven over stdin/stdout,
one JSON object per line, one reply line per command:

- ``{"op": "add", "id": RULE, "kind": "loss"|"latency"|"reorder"|"duplicate"|"reset",
  "params": {...}, "seed": N, "matches": [{"dir": "request", "src": IP, "dst": IP, "sport": P?,
  "dport": P?}, ...]}`` -> ``{"ok": true}``
- ``{"op": "remove", "id": RULE}`` -> ``{"ok": true, "packets": {counters}}`` (held packets
  of the rule are delivered first)
- ``{"op": "ping"}`` -> ``{"ok": true}``

Every random choice comes from an RNG seeded by (plan seed, rule id) (the proxy's
``derive_rng``). Verdicts may be given after the callback returns (latency, reordering hold a
packet); duplicates and TCP resets are sent through a raw socket from the router. EOF on
stdin: every held packet is delivered and the worker exits.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from proxy_addons.runtime import derive_rng

__all__ = ["main", "tcp_checksum"]

_FIN, _SYN, _RST, _PSH, _ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """The TCP checksum of ``segment`` (checksum field zeroed) between IPv4 ``src`` and ``dst``."""
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    return _csum(pseudo + segment)


class Packet:
    """An IPv4/TCP packet's fields (parsed once)."""

    __slots__ = ("ack", "data_len", "dport", "flags", "ihl", "raw", "seq", "sport", "src", "dst", "thl")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.ihl = (raw[0] & 0x0F) * 4
        self.src, self.dst = socket.inet_ntoa(raw[12:16]), socket.inet_ntoa(raw[16:20])
        t = raw[self.ihl:]
        self.sport, self.dport, self.seq, self.ack = struct.unpack("!HHII", t[:12])
        self.thl = (t[12] >> 4) * 4
        self.flags = t[13]
        total = struct.unpack("!H", raw[2:4])[0]
        self.data_len = max(total - self.ihl - self.thl, 0)

    @property
    def conn(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    def truncated(self, keep: int) -> bytes:
        """This packet with only the first ``keep`` data bytes (lengths and checksums fixed)."""
        ip = bytearray(self.raw[:self.ihl])
        tcp = bytearray(self.raw[self.ihl:self.ihl + self.thl])
        data = self.raw[self.ihl + self.thl:self.ihl + self.thl + keep]
        struct.pack_into("!H", ip, 2, self.ihl + self.thl + len(data))
        struct.pack_into("!H", ip, 10, 0)
        struct.pack_into("!H", ip, 10, _csum(bytes(ip)))
        struct.pack_into("!H", tcp, 16, 0)
        struct.pack_into("!H", tcp, 16, tcp_checksum(bytes(ip[12:16]), bytes(ip[16:20]), bytes(tcp) + data))
        return bytes(ip) + bytes(tcp) + data


def build_rst(src: str, sport: int, dst: str, dport: int, seq: int, ack: int | None) -> bytes:
    """An IPv4 TCP RST (RST+ACK when ``ack`` is given)."""
    flags = _RST | (_ACK if ack is not None else 0)
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, (ack or 0) & 0xFFFFFFFF,
                                5 << 4, flags, 0, 0, 0))
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    struct.pack_into("!H", tcp, 16, tcp_checksum(s, d, bytes(tcp)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, socket.IPPROTO_TCP, 0, s, d))
    struct.pack_into("!H", ip, 10, _csum(bytes(ip)))
    return bytes(ip) + bytes(tcp)


class Rule:
    """One active network rule: its matches, parameters, RNG and counters."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.id: str = spec["id"]
        self.kind: str = spec["kind"]
        self.params: dict[str, Any] = spec.get("params", {})
        self.rng = derive_rng(int(spec.get("seed", 0)), self.id, "packets")
        self.matches: list[dict[str, Any]] = spec["matches"]
        self.counters: dict[str, int] = {"seen": 0}
        self.last_due: dict[str, float] = {}
        self.held: dict[str, Any] = {}  # direction -> (pkt, timer token) held for reordering
        self.resp_bytes: dict[tuple, int] = {}
        self.reset_conns: set[tuple] = set()
        self.resets_left = int(self.params.get("count", 1))

    def direction(self, p: Packet) -> str | None:
        for m in self.matches:
            if (p.src == m["src"] and p.dst == m["dst"] and m.get("sport") in (None, p.sport)
                    and m.get("dport") in (None, p.dport)):
                return m["dir"]
        return None

    def count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n


class Worker:
    def __init__(self, queue_num: int, *, out: Callable[[str], None]) -> None:
        self.queue_num = queue_num
        self.rules: dict[str, Rule] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._tick = itertools.count()
        self.out = out
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.cancelled: set[int] = set()

    # --- timers -----------------------------------------------------------------------------

    def later(self, delay_s: float, fn: Callable[[], None]) -> int:
        token = next(self._tick)
        heapq.heappush(self.timers, (time.monotonic() + max(delay_s, 0), token, fn))
        return token

    def run_due(self) -> float | None:
        """Run due timers; seconds until the next one (None: none)."""
        while self.timers:
            due, token, fn = self.timers[0]
            if due > time.monotonic():
                return due - time.monotonic()
            heapq.heappop(self.timers)
            if token in self.cancelled:
                self.cancelled.discard(token)
                continue
            fn()
        return None

    # --- packets --------------------------------------------------------------------------------

    def send_raw(self, data: bytes, dst: str) -> None:
        try:
            self.raw.sendto(data, (dst, 0))
        except OSError as exc:
            print(f"nfqworker: raw send to {dst} failed: {exc}", file=sys.stderr)

    def handle(self, pkt: Any) -> None:
        raw = pkt.get_payload()
        try:
            p = Packet(raw)
        except (struct.error, IndexError, OSError):
            pkt.accept()
            return
        delay = 0.0
        copies = 0
        hold_rule: tuple[Rule, str] | None = None
        for rule in self.rules.values():
            d = rule.direction(p)
            if d is None:
                continue
            rule.count("seen")
            k = rule.kind
            if k == "loss":
                if rule.rng.random() < rule.params["probability"]:
                    rule.count("dropped")
                    pkt.drop()
                    return
            elif k == "reset":
                verdict = self._reset(rule, d, p, pkt)
                if verdict:
                    return
            elif k == "duplicate":
                if rule.rng.random() < rule.params.get("probability", 0.25):
                    copies += int(rule.params.get("copies", 1))
                    rule.count("duplicated")
            elif k == "latency":
                jitter = rule.params.get("jitter_ms", 0)
                ms = rule.params["delay_ms"] + (rule.rng.randint(0, jitter) if jitter else 0)
                due = max(time.monotonic() + ms / 1000, rule.last_due.get(d, 0.0))
                rule.last_due[d] = due  # one direction keeps its order
                delay = max(delay, due - time.monotonic())
                rule.count("delayed")
            elif k == "reorder":
                held = rule.held.get(d)
                if held is not None:  # this packet overtakes the held one: release it after this one
                    hold_rule = (rule, d)
                elif rule.rng.random() < rule.params.get("probability", 0.25):
                    pkt.retain()
                    token = self.later(rule.params.get("max_hold_ms", 50) / 1000, lambda r=rule, dd=d: self._release(r, dd))
                    rule.held[d] = (pkt, token)
                    return
        if copies:
            for _ in range(copies):
                self.send_raw(raw, p.dst)
        if delay > 0:
            pkt.retain()
            self.later(delay, pkt.accept)
        else:
            pkt.accept()
        if hold_rule is not None:
            rule, d = hold_rule
            held = rule.held.get(d)
            if held is not None:
                self.cancelled.add(held[1])
                self._release(rule, d, overtaken=True)

    def _release(self, rule: Rule, d: str, overtaken: bool = False) -> None:
        held = rule.held.pop(d, None)
        if held is None:
            return
        if overtaken:
            rule.count("reordered")
        held[0].accept()

    def _reset(self, rule: Rule, d: str, p: Packet, pkt: Any) -> bool:
        """Reset bookkeeping for one packet; True if a verdict was given."""
        key = p.conn if d == "response" else (p.dst, p.dport, p.src, p.sport)
        if key in rule.reset_conns:
            pkt.drop()  # after the reset: nothing more of this connection goes through
            rule.count("dropped")
            return True
        if d == "request":
            if p.data_len:
                rule.resp_bytes[key] = 0  # a new request: its response is counted from 0
            return False
        if not p.data_len or rule.resets_left <= 0:
            return False
        sent = rule.resp_bytes.get(key, 0)
        limit = int(rule.params["after_bytes"])
        if sent + p.data_len <= limit:
            rule.resp_bytes[key] = sent + p.data_len
            return False
        keep = max(limit - sent, 0)
        rule.resets_left -= 1
        rule.reset_conns.add(key)
        rule.count("resets")
        if keep:
            pkt.set_payload(p.truncated(keep))
            pkt.accept()
        else:
            pkt.drop()
        # the receiver of the response is reset at the first byte it did not get; the sender
        # (the proxy) at the next byte it expects from the receiver
        self.send_raw(build_rst(p.src, p.sport, p.dst, p.dport, p.seq + keep, p.ack), p.dst)
        self.send_raw(build_rst(p.dst, p.dport, p.src, p.sport, p.ack, None), p.src)
        return True

    # --- commands -------------------------------------------------------------------------------

    def command(self, line: str) -> dict[str, Any]:
        try:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "add":
                self.rules[cmd["id"]] = Rule(cmd)
                return {"ok": True}
            if op == "remove":
                rule = self.rules.pop(cmd["id"], None)
                if rule is None:
                    return {"ok": False, "error": f"no rule {cmd['id']!r}"}
                for d in list(rule.held):
                    held = rule.held.get(d)
                    if held is not None:
                        self.cancelled.add(held[1])
                    self._release(rule, d)
                return {"ok": True, "packets": rule.counters}
            if op == "ping":
                return {"ok": True}
            return {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as exc:  # a bad command is answered, never fatal
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def flush(self) -> None:
        """Deliver everything held (exit, or no rules left)."""
        for rule in self.rules.values():
            for d in list(rule.held):
                self._release(rule, d)
        while self.timers:
            _, token, fn = heapq.heappop(self.timers)
            if token not in self.cancelled:
                fn()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nfqworker")
    ap.add_argument("--queue", type=int, default=0)
    args = ap.parse_args(argv)
    from netfilterqueue import NetfilterQueue  # only here: the harness imports this module without it

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    worker = Worker(args.queue, out=lambda s: None)
    nfq = NetfilterQueue()
    nfq.bind(args.queue, worker.handle, max_len=4096)
    fd = nfq.get_fd()
    os.set_blocking(fd, False)
    stdin = sys.stdin.fileno()
    buf = b""
    reply({"ok": True, "ready": True})
    try:
        while True:
            wait = worker.run_due()
            readable, _, _ = select.select([fd, stdin], [], [], wait)
            if fd in readable:
                nfq.run(block=False)
            if stdin in readable:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        reply(worker.command(line.decode()))
    except KeyboardInterrupt:
        pass
    finally:
        worker.flush()
        nfq.unbind()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
