"""Fuzzing the decoders: arbitrary and mutated bytes raise nothing but DecodeError.

A decode that succeeds must be canonical: re-encoding gives the input bytes
back (the wire format has exactly one encoding per message).

Hypothesis profile ``dap-codec-fuzz``: 4,000 random-byte examples plus 6,000
mutated-encoding examples (10,000 in total), ``deadline=None``. A seeded,
exhaustive single-byte sweep over the pinned fixtures complements it.
"""

from __future__ import annotations

import random

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec_fixtures import FIXTURES

from dap import strategies as dst
from dap.errors import DecodeError
from dap.messages import MESSAGE_TYPES, AggregationJobInitReq, PingPongMessage

ALL = list(MESSAGE_TYPES.values())

settings.register_profile(
    "dap-codec-fuzz",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("dap-codec-fuzz")
RANDOM_BYTES_EXAMPLES = 4_000
MUTATED_EXAMPLES = 6_000


def check_decode(cls, data: bytes) -> bool:
    """Decode; True if it succeeded. Fails the test on any non-DecodeError or a
    non-canonical success."""
    try:
        msg = cls.decode(data)
    except DecodeError as err:
        assert err.path == cls.__name__ or err.path.startswith(cls.__name__ + ".")
        assert 0 <= err.offset <= len(data)
        assert err.reason
        assert str(err) == f"{err.path} @ {err.offset}: {err.reason}"
        return False
    assert type(msg) is cls
    assert msg.encode() == data
    return True


# --- arbitrary bytes --------------------------------------------------------------


@settings(FUZZ, max_examples=RANDOM_BYTES_EXAMPLES)
@given(cls=st.sampled_from(ALL), data=st.binary(max_size=200))
def test_arbitrary_bytes(cls, data):
    check_decode(cls, data)


# --- mutated valid encodings --------------------------------------------------------

# (op, position, argument); positions are taken modulo the length.
mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("xor"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 10_000), st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF])),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 4)),
    # length-prefix-shaped overwrites
    st.tuples(st.just("u16"), st.integers(0, 10_000), st.sampled_from([0, 1, 2, 0x7FFF, 0xFFFF])),
    st.tuples(st.just("u32"), st.integers(0, 10_000), st.sampled_from([0, 1, 16, 2**31, 2**32 - 1])),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        n = len(buf)
        p = pos % (n + 1)
        if op == "truncate":
            del buf[p:]
        elif op == "insert":
            buf[p:p] = arg
        elif n == 0:
            continue
        else:
            p = pos % n
            if op == "xor":
                buf[p] ^= arg
            elif op == "set":
                buf[p] = arg
            elif op == "delete":
                del buf[p:p + arg]
            elif op == "u16":
                buf[p:p + 2] = arg.to_bytes(2, "big")
            elif op == "u32":
                buf[p:p + 4] = arg.to_bytes(4, "big")
    return bytes(buf)


@settings(FUZZ, max_examples=MUTATED_EXAMPLES)
@given(
    pair=dst.encoded_messages(),
    ops=st.lists(mutations, min_size=1, max_size=3),
    other=st.one_of(st.none(), st.sampled_from(ALL)),
)
def test_mutated_encodings(pair, ops, other):
    cls, wire = pair
    check_decode(other or cls, mutate(wire, ops))


def test_fuzz_budget():
    assert RANDOM_BYTES_EXAMPLES + MUTATED_EXAMPLES >= 10_000
    assert FUZZ.deadline is None


# --- deterministic sweeps over the pinned fixtures -----------------------------------


@pytest.mark.parametrize(("msg", "wire"), FIXTURES)
def test_every_single_byte_change(msg, wire):
    cls = type(msg)
    accepted = 0
    for i in range(len(wire)):
        for new in {0x00, 0x01, 0x7F, 0xFF, wire[i] ^ 0x01, wire[i] ^ 0x80}:
            if new != wire[i]:
                accepted += check_decode(cls, wire[:i] + bytes([new]) + wire[i + 1:])
        assert not check_decode(cls, wire[:i])  # every proper prefix fails
        check_decode(cls, wire[:i] + b"\x00" + wire[i:])
        check_decode(cls, wire[:i] + wire[i + 1:])
    assert not check_decode(cls, wire + b"\x00")
    # sanity: changes inside opaque payloads are accepted, so the sweep was not vacuous
    assert accepted > 0


def random_op(rng: random.Random) -> tuple[str, int, object]:
    op = rng.choice(["truncate", "xor", "set", "insert", "delete", "u16", "u32"])
    arg = {
        "truncate": 0,
        "xor": rng.randrange(1, 256),
        "set": rng.randrange(256),
        "insert": rng.randbytes(rng.randrange(1, 5)),
        "delete": rng.randrange(1, 5),
        "u16": rng.choice([0, 1, 2, 0x7FFF, 0xFFFF]),
        "u32": rng.choice([0, 1, 16, 2**31, 2**32 - 1]),
    }[op]
    return op, rng.randrange(10_000), arg


def test_seeded_random_mutations_of_a_large_message():
    rng = random.Random(20231214)
    base = AggregationJobInitReq.decode(FIXTURES[2].values[1])
    inits = [
        attrs.evolve(base.prepare_inits[0], payload=PingPongMessage.initialize(rng.randbytes(rng.randrange(40))).encode())
        for _ in range(8)
    ]
    wire = attrs.evolve(base, prepare_inits=inits).encode()
    decoded = sum(
        check_decode(AggregationJobInitReq, mutate(wire, [random_op(rng) for _ in range(rng.randrange(1, 4))]))
        for _ in range(20_000)
    )
    assert decoded > 0  # some mutations land in opaque bytes and still decode
