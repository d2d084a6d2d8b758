"""Network rules: faults below HTTP (partitions, packet loss, latency, rate, resets), as frozen values.

The HTTP rules of a plan (:mod:`faults.plan`) act on whole DAP messages inside the fault proxy.
A :class:`NetRule` acts on the *packets* of one link while a **window** is open; it needs the
harness's network-namespace mode (``faultrun --network netns``, docs/network.md), where every
link crosses a router namespace the harness controls. A plan carries both
(``Plan.net_rules``, ``[[net_rules]]`` in TOML beside ``[[rules]]``)::

    [[net_rules]]
    id = "cut-l2h"
    link = "leader->helper"
    direction = "both"            # request (source -> target), response (target -> source), both
    [net_rules.window]
    after_kind = "agg_init"       # opens at the 1st agg_init request on the link (or after_ms / after_event)
    for_ms = 3000                 # closes 3 s later (absent: at the scenario's end)
    [net_rules.action]
    type = "partition"

Where a link's packets are cut: on the wire between the link's source role and the fault
proxy, which stands at the target's door. A request lost in the request direction never
reaches the proxy (the history does not show it); an answer lost in the response direction
was sent by the target (the history shows the response) and never reaches the source.

**Windows.** Every window has an anchor and an offset: the scenario's start (no trigger), a
named event (``after_event``, one of :data:`faults.actions.EVENT_NAMES`: the response that
fires it) or the ``after_nth``-th request (``after_phase = "response"``: response) of kind
``after_kind`` on ``after_link`` (default: the rule's link). It opens ``after_ms`` after the
anchor and stays open ``for_ms`` (None: to the end of the scenario). A message trigger with
``after_ms = 0`` is exact: the proxy holds the triggering message until the rule is in place,
so "partition after the first AggregationJobInitReq" loses that request's answer on the wire.

**Determinism.** Packet-level choices (which packet is lost, duplicated, reordered; jitter)
come from an RNG seeded by (plan seed, rule id), as the HTTP rules' do.

**History.** Every opening and closing of a window is a :class:`~faults.history.FaultEvent`
with ``phase = "network"``, ``action = "net-<type>"``, the link, no flow (``flow_id`` "",
``flow_seq`` -1) and a :class:`NetChange` (``state`` ``start`` / ``stop``, what triggered it,
why it stopped and, at the stop, the packet counters).

Adding a network action: write the class (fields = parameters, class attributes = what it
means), add it to :data:`NET_ACTIONS`, realise it in ``harness/stack/netfaults.py``, document
it in docs/network.md.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
from attrs import validators as v

from faults.actions import EVENT_NAMES, Action, Change
from faults.vocabulary import KINDS, LINK_KINDS, LINKS, PHASES

__all__ = [
    "DIRECTIONS",
    "NET_ACTIONS",
    "NET_PHASE",
    "Blackhole",
    "DuplicatePackets",
    "Latency",
    "Loss",
    "NetAction",
    "NetChange",
    "NetRule",
    "Partition",
    "Rate",
    "Reorder",
    "Reset",
    "Window",
    "is_net_action",
    "net_action_class",
    "net_action_name",
    "net_change_from_dict",
]

#: request: packets from the link's source toward its target; response: the way back
DIRECTIONS = ("request", "response", "both")
#: the ``phase`` of every network fault event in history
NET_PHASE = "network"
#: history ``action`` names are ``net-<type>``
_PREFIX = "net-"


def _int(*extra: Any) -> Any:
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attr.name} must be an integer, got {value!r}")

    return v.and_(check, *extra)


def _opt_int(*extra: Any) -> Any:
    return v.optional(_int(*extra))


def _prob(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0 < value <= 1:
        raise ValueError(f"{attr.name} must be a number in (0, 1], got {value!r}")


def _to_float(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


@attrs.frozen(kw_only=True)
class NetChange(Change):
    """A network fault event's ``changed``: the window opened (``state`` start) or closed (stop)."""

    state: str | None = None
    #: the packets it acts on (``request``, ``response``, ``both``)
    direction: str | None = None
    #: how it is realised (``iptables DROP``, ``NFQUEUE``, ``htb+tbf``...)
    mechanism: str | None = None
    #: what opened the window (``t+1500ms``, ``agg_init request #1``, ``agg_init_done``)
    trigger: str | None = None
    #: the flow whose message opened it (message triggers)
    trigger_flow_seq: int | None = None
    #: why it closed: ``for_ms elapsed``, ``scenario end``
    stopped_by: str | None = None
    #: packet counters at the stop (``seen``, ``dropped``, ``delayed``, ``duplicated``,
    #: ``reordered``, ``resets``; what the mechanism can count)
    packets: dict[str, int] | None = None

    @property
    def applied(self) -> bool:
        return super().applied and self.state in ("start", "stop")


class NetAction(Action):
    """What every network action shares. Network actions are :class:`faults.actions.Action`
    subclasses (so a fault event's ``action_class`` works for them too) with phase
    ``network`` and none of the message traits; their own traits:"""

    phases: ClassVar[frozenset[str]] = frozenset({NET_PHASE})
    default_phase: ClassVar[str] = NET_PHASE
    #: packets of the link are dropped while the window is open (the link is cut)
    cuts: ClassVar[bool] = False
    #: it only changes when packets arrive (or how fast), never whether they do
    slows: ClassVar[bool] = False
    #: the counter that must be > 0 at the window's stop for the fault to have happened
    #: (None: the window opening is the fault); the checker's essential-rule test uses it
    effect_counter: ClassVar[str | None] = None
    #: directions it can act on (``both`` = each of them)
    directions: ClassVar[tuple[str, ...]] = DIRECTIONS
    #: packet decisions made by the harness's NFQUEUE worker (docs/network.md)
    uses_nfqueue: ClassVar[bool] = False
    Change: ClassVar[type[Change]] = NetChange


@attrs.frozen
class Partition(NetAction):
    """Drop every packet of the link in the rule's direction(s): new connections time out,
    open ones stall until the window closes and TCP's retransmissions get through."""

    cuts: ClassVar = True


@attrs.frozen
class Blackhole(NetAction):
    """Silently drop the packets of every connection of the link that is open when the window
    opens (a half-open connection: neither end learns it is dead); connections opened later
    work. The request in flight hangs until its sender times out."""

    cuts: ClassVar = True


@attrs.frozen
class Loss(NetAction):
    """Drop each packet of the link with ``probability`` (seeded per packet)."""

    probability: float = attrs.field(converter=_to_float, validator=_prob)
    uses_nfqueue: ClassVar = True


@attrs.frozen
class Latency(NetAction):
    """Hold each packet ``delay_ms`` plus a seeded jitter in [0, ``jitter_ms``]; packets of one
    direction keep their order (no reordering: that is :class:`Reorder`)."""

    delay_ms: int = attrs.field(validator=_int(v.ge(0), v.le(60_000)))
    jitter_ms: int = attrs.field(default=0, validator=_int(v.ge(0), v.le(60_000)))
    slows: ClassVar = True
    uses_nfqueue: ClassVar = True


@attrs.frozen
class Rate(NetAction):
    """Limit the link to ``kbit`` kbit/s (a token bucket, ``tbf``, of ``burst_bytes``)."""

    kbit: int = attrs.field(validator=_int(v.ge(8), v.le(10_000_000)))
    burst_bytes: int = attrs.field(default=4096, validator=_int(v.ge(1600), v.le(10_000_000)))
    slows: ClassVar = True


@attrs.frozen
class Reorder(NetAction):
    """Hold a packet (each with ``probability``, seeded) until the next packet of the same
    direction has gone through, at most ``max_hold_ms``; then deliver it: it arrives late,
    after one that was sent after it."""

    probability: float = attrs.field(default=0.25, converter=_to_float, validator=_prob)
    max_hold_ms: int = attrs.field(default=50, validator=_int(v.ge(1), v.le(10_000)))
    slows: ClassVar = True
    effect_counter: ClassVar = "reordered"
    uses_nfqueue: ClassVar = True


@attrs.frozen
class DuplicatePackets(NetAction):
    """Deliver each packet (with ``probability``, seeded) ``copies`` + 1 times."""

    probability: float = attrs.field(default=0.25, converter=_to_float, validator=_prob)
    copies: int = attrs.field(default=1, validator=_int(v.ge(1), v.le(5)))
    effect_counter: ClassVar = "duplicated"
    uses_nfqueue: ClassVar = True


@attrs.frozen
class Reset(NetAction):
    """After ``after_bytes`` bytes of a response (TCP payload, headers included) went through,
    cut the rest and send a TCP RST to both ends, for the first ``count`` responses on the
    link while the window is open. Response direction only."""

    after_bytes: int = attrs.field(validator=_int(v.ge(0), v.le(100_000_000)))
    count: int = attrs.field(default=1, validator=_int(v.ge(1), v.le(100)))
    effect_counter: ClassVar = "resets"
    directions: ClassVar = ("response",)
    uses_nfqueue: ClassVar = True


#: The one name -> class table (``type`` in TOML; the history calls it ``net-<type>``).
NET_ACTIONS: dict[str, type[NetAction]] = {
    "partition": Partition,
    "blackhole": Blackhole,
    "loss": Loss,
    "latency": Latency,
    "rate": Rate,
    "reorder": Reorder,
    "duplicate": DuplicatePackets,
    "reset": Reset,
}
_NAMES = {cls: name for name, cls in NET_ACTIONS.items()}


def net_action_name(action: Any) -> str:
    """``Partition()`` -> ``"partition"``."""
    return _NAMES[type(action)]


def is_net_action(name: str) -> bool:
    """Whether a fault event's ``action`` names a network action (``net-partition``)."""
    return name.startswith(_PREFIX) and name[len(_PREFIX):] in NET_ACTIONS


def net_action_class(name: str) -> type[NetAction]:
    """The class of a history action name (``net-partition``) or a table name (``partition``)."""
    return NET_ACTIONS[name.removeprefix(_PREFIX)]


def net_change_from_dict(data: Any) -> NetChange:
    if isinstance(data, NetChange):
        return data
    try:
        return NetChange(**dict(data or {}))
    except TypeError as exc:
        raise ValueError(f"network fault event: {exc}") from None


@attrs.frozen
class Window:
    """When a network rule acts: ``after_ms`` after its anchor, for ``for_ms`` (None: until the
    scenario ends). The anchor is the scenario's start, or a message trigger: ``after_event``
    (an :data:`~faults.actions.EVENT_NAMES` name) or the ``after_nth``-th message of kind
    ``after_kind`` in phase ``after_phase`` on ``after_link`` (default: the rule's link)."""

    after_ms: int = attrs.field(default=0, validator=_int(v.ge(0), v.le(3_600_000)))
    for_ms: int | None = attrs.field(default=None, validator=_opt_int(v.ge(1), v.le(3_600_000)))
    after_event: str | None = attrs.field(default=None, validator=v.optional(v.in_(tuple(EVENT_NAMES))))
    after_kind: str | None = attrs.field(default=None, validator=v.optional(v.in_(KINDS)))
    after_link: str | None = attrs.field(default=None, validator=v.optional(v.in_(LINKS)))
    after_nth: int = attrs.field(default=1, validator=_int(v.ge(1), v.le(10_000)))
    after_phase: str = attrs.field(default="request", validator=v.in_(PHASES))

    def __attrs_post_init__(self) -> None:
        if self.after_event is not None and self.after_kind is not None:
            raise ValueError("window: give after_event or after_kind, not both")
        if self.after_kind is None and (self.after_link is not None or self.after_nth != 1
                                        or self.after_phase != "request"):
            raise ValueError("window: after_link / after_nth / after_phase need after_kind")

    @property
    def triggered(self) -> bool:
        """Opened by a message rather than by the clock."""
        return self.after_event is not None or self.after_kind is not None

    def trigger_text(self, link: str) -> str:
        """``agg_init request #1 on leader->helper`` / ``agg_share_done`` / ``scenario start``."""
        if self.after_event is not None:
            return self.after_event
        if self.after_kind is not None:
            return f"{self.after_kind} {self.after_phase} #{self.after_nth} on {self.after_link or link}"
        return "scenario start"


@attrs.frozen
class NetRule:
    """One network fault: ``id``, the ``link`` and ``direction`` whose packets it acts on, the
    :class:`Window` and a network action (:data:`NET_ACTIONS`). ``optional`` as for HTTP rules:
    a rule that is not optional and never started (or, for actions with an
    ``effect_counter``, never had an effect) makes the run inconclusive."""

    id: str = attrs.field(validator=[v.instance_of(str), v.min_len(1)])
    link: str = attrs.field(validator=v.in_(LINKS))
    action: Any = attrs.field(validator=v.instance_of(NetAction))
    direction: str = attrs.field(default="both", validator=v.in_(DIRECTIONS))
    window: Window = attrs.field(factory=Window)
    optional: bool = attrs.field(default=False, validator=v.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        allowed = self.action.directions
        if self.direction != "both" and self.direction not in allowed or \
                self.direction == "both" and "both" not in allowed:
            raise ValueError(f"net action {self.action_name!r} acts on direction {', '.join(allowed)} only, "
                             f"not {self.direction!r}")
        w = self.window
        if w.after_kind is not None:
            link = w.after_link or self.link
            if w.after_kind not in LINK_KINDS[link]:
                raise ValueError(f"window: no {w.after_kind} messages travel on {link} "
                                 f"(there: {', '.join(LINK_KINDS[link])})")

    @property
    def action_name(self) -> str:
        return net_action_name(self.action)

    @property
    def event_action(self) -> str:
        """The ``action`` of its fault events in history (``net-partition``)."""
        return _PREFIX + self.action_name

    @property
    def directions(self) -> tuple[str, ...]:
        """The single directions it acts on."""
        return ("request", "response") if self.direction == "both" else (self.direction,)
