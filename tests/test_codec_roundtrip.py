"""Hypothesis round trips for every message class, and the strategies themselves."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from dap import strategies as dst
from dap.codec import to_jsonable
from dap.messages import MESSAGE_TYPES, HpkeConfigList, Interval, Message, PingPongMessage

ALL = list(MESSAGE_TYPES.values())


def test_every_message_class_has_a_strategy():
    assert set(dst.STRATEGIES) == set(ALL)


@pytest.mark.parametrize("cls", ALL, ids=[c.__name__ for c in ALL])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(cls, data):
    msg = data.draw(dst.messages_of(cls))
    assert type(msg) is cls
    wire = msg.encode()
    assert isinstance(wire, bytes)
    back = cls.decode(wire)
    assert back == msg
    assert back.encode() == wire
    assert hash(back) == hash(msg)


@settings(max_examples=200, deadline=None)
@given(pair=dst.encoded_messages())
def test_encoded_messages_decode(pair):
    cls, wire = pair
    assert cls.decode(wire).encode() == wire


@settings(max_examples=100, deadline=None)
@given(msg=dst.messages())
def test_json_view_is_serialisable_and_ordered(msg):
    doc = to_jsonable(msg)
    assert json.loads(json.dumps(doc)) == doc
    present = [s.name for s in type(msg)._SPECS if not (s.conditional and getattr(msg, s.name) is None)]
    assert list(doc) == present


@settings(max_examples=50, deadline=None)
@given(msg=dst.ping_pong_messages())
def test_ping_pong_variants(msg):
    if msg.type == 0:
        assert msg.prep_msg is None and msg.prep_share is not None
    elif msg.type == 2:
        assert msg.prep_share is None and msg.prep_msg is not None
    else:
        assert msg.prep_msg is not None and msg.prep_share is not None
    assert PingPongMessage.decode(msg.encode()) == msg


def test_strategies_check_arguments_early():
    with pytest.raises(InvalidArgument):
        dst.opaque(5, 2)
    with pytest.raises(InvalidArgument):
        dst.aggregation_job_init_reqs(max_inits=0)
    with pytest.raises(InvalidArgument):
        dst.ids(bytes)
    with pytest.raises(InvalidArgument):
        dst.messages_of(int)


@settings(max_examples=30, deadline=None)
@given(lst=dst.hpke_config_lists(max_configs=2))
def test_size_knobs_are_respected(lst):
    assert isinstance(lst, HpkeConfigList)
    assert 1 <= len(lst.configs) <= 2


def test_messages_shrinks_to_simplest_class():
    from hypothesis import find

    found = find(dst.messages(), lambda m: isinstance(m, Message))
    assert len(found.encode()) == 1  # a one-byte selector: nothing simpler exists
    assert find(dst.intervals(), lambda m: True) == Interval(0, 0)
    resp = find(dst.prepare_resps(), lambda m: True)
    assert resp.prepare_resp_state == 1 and resp.report_id == bytes(16)  # finished, zero id
