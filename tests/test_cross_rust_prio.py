"""Rust ``prio`` 0.16 (VDAF-08) as a second oracle for ``dap.vdaf``, through the Janus peer binary.

``dap-faultrun-janus-peer shard | prepare | unshard | check-prio3`` (peers/janus/src/oracle.rs)
read JSON on stdin and write JSON on stdout. Checked here, for Prio3Count, Sum, SumVec and
Histogram, and for Poplar1:

- prio's own test-vector checker accepts every official VDAF-08 Prio3 vector (sanity: the
  oracle is VDAF-08), and accepts vectors that ``dap.vdaf`` generates from random nonces,
  sharding randomness and verify keys: the same nonce + rand give byte-identical public and
  input shares, prep shares, prep messages, output shares and aggregate shares, and the same
  result. A vector with one byte changed is refused (the check is not vacuous);
- reports sharded by prio (its own randomness) prepare, aggregate and unshard in ``dap.vdaf``
  to the exact aggregate; reports sharded by ``dap.vdaf`` prepare in prio with byte-identical
  prep shares, messages, output and aggregate shares, and prio's unshard gives the same result;
- Poplar1 (prio 0.16 implements VDAF-08's): prio prepares the official Poplar1 vectors'
  shares to the vectors' bytes; prio-sharded reports prepare in ``dap.vdaf`` and
  ``dap.vdaf``-sharded ones in prio, byte for byte, at several tree levels.

prio 0.16 has no public API that shards with given randomness except its test-vector checker
(feature ``test-util``), so byte identity of sharding is checked through ``check-prio3``.
A missing binary FAILS (``bash scripts/bootstrap --test`` builds it).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from typing import Any

import pytest
from peers_fixtures import require_janus
from roles_fixtures import expected_result, random_measurement
from test_prio3_vectors import load

from dap.vdaf.params import VdafParams
from dap.vdaf.poplar1 import Poplar1AggParam, Poplar1PrepState

PRIO3 = [
    {"type": "Prio3Count"},
    {"type": "Prio3Sum", "bits": "8"},
    {"type": "Prio3Sum", "bits": "48"},
    {"type": "Prio3SumVec", "bits": "8", "length": "10", "chunk_length": "12"},
    {"type": "Prio3SumVec", "bits": "16", "length": "20", "chunk_length": "7"},
    {"type": "Prio3Histogram", "length": "12", "chunk_length": "4"},
    {"type": "Prio3Histogram", "length": "100", "chunk_length": "10"},
]
IDS = ["-".join([v["type"], *(v[k] for k in sorted(v) if k != "type")]) for v in PRIO3]
OFFICIAL = ["Prio3Count_0", "Prio3Count_1", "Prio3Sum_0", "Prio3Sum_1", "Prio3SumVec_0", "Prio3SumVec_1",
            "Prio3Histogram_0", "Prio3Histogram_1"]
N = 6


def rust(command: str, body: dict) -> Any:
    proc = subprocess.run([str(require_janus()), command], input=json.dumps(body), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def hx(b: bytes) -> str:
    return b.hex()


def vdaf_of(obj: dict) -> Any:
    return VdafParams.from_interop(obj).build()


def py_measurement(obj: dict, interop: Any) -> Any:
    return VdafParams.from_interop(obj).measurement_from_interop(interop)


def py_prepare(vdaf: Any, verify_key: bytes, agg_param: Any, nonce: bytes, public_share: bytes,
               input_shares: list[bytes]) -> dict:
    """Both Aggregators' preparation in dap.vdaf, every round, encoded as the oracle writes it."""
    ps = vdaf.decode_public_share(public_share)
    states, shares = [], []
    for j, share in enumerate(input_shares):
        st, sh = vdaf.prep_init(verify_key, j, agg_param, nonce, ps, vdaf.decode_input_share(j, share))
        states.append(st)
        shares.append(sh)
    rounds, messages = [], []
    while True:
        rounds.append([hx(vdaf.encode_prep_share(s)) for s in shares])
        msg = vdaf.prep_shares_to_prep(agg_param, shares)
        messages.append(hx(vdaf.encode_prep_msg(msg)))
        nxt = [vdaf.prep_next(st, msg) for st in states]
        if all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], Poplar1PrepState) for x in nxt):
            states = [x[0] for x in nxt]
            shares = [x[1] for x in nxt]
            continue
        return {"prep_shares": rounds, "prep_messages": messages, "outs": nxt,
                "out_shares": [hx(vdaf.encode_out_share(o)) for o in nxt]}


def py_vector(obj: dict, measurements: list[Any]) -> dict:
    """A VDAF-08 test vector (the official files' layout) computed by dap.vdaf from fresh randomness."""
    vdaf = vdaf_of(obj)
    verify_key = os.urandom(16)
    e = vdaf.field.ENCODED_SIZE
    prep, outs = [], []
    for m in measurements:
        nonce, rand = os.urandom(16), os.urandom(vdaf.RAND_SIZE)
        public_share, input_shares = vdaf.shard_encoded(m, nonce, rand)
        p = py_prepare(vdaf, verify_key, None, nonce, public_share, input_shares)
        outs.append(p["outs"])
        prep.append({"measurement": m, "nonce": hx(nonce), "rand": hx(rand), "public_share": hx(public_share),
                     "input_shares": [hx(s) for s in input_shares], "prep_shares": p["prep_shares"],
                     "prep_messages": p["prep_messages"],
                     "out_shares": [[x.to_bytes(e, "little").hex() for x in o] for o in p["outs"]]})
    agg = [vdaf.aggregate(None, [o[j] for o in outs]) for j in range(2)]
    params = {k: int(v) for k, v in obj.items() if k != "type"}
    return {"verify_key": hx(verify_key), "shares": 2, "agg_param": None, "prep": prep,
            "agg_shares": [hx(vdaf.encode_agg_share(a)) for a in agg],
            "agg_result": vdaf.unshard(None, agg, len(measurements)), **params}


def _obj_of_official(name: str, vec: dict) -> dict:
    kind = name.rsplit("_", 1)[0]
    keys = {"Prio3Count": (), "Prio3Sum": ("bits",), "Prio3SumVec": ("bits", "length", "chunk_length"),
            "Prio3Histogram": ("length", "chunk_length")}[kind]
    return {"type": kind, **{k: str(vec[k]) for k in keys}}


def test_prio_accepts_every_official_prio3_vector() -> None:
    for name in OFFICIAL:
        vec = load(f"{name}.json")
        out = rust("check-prio3", {"vdaf": _obj_of_official(name, vec), "vectors": [vec]})
        assert out["results"] == [{"ok": True}], (name, out)


@pytest.mark.parametrize("obj", PRIO3, ids=IDS)
def test_same_nonce_and_rand_give_the_same_bytes(obj: dict) -> None:
    rng = random.Random(json.dumps(obj))
    measurements = [py_measurement(obj, random_measurement(obj, rng)) for _ in range(N)]
    vec = py_vector(obj, measurements)
    broken = json.loads(json.dumps(vec))
    share = bytearray.fromhex(broken["prep"][0]["input_shares"][1])
    share[0] ^= 1
    broken["prep"][0]["input_shares"][1] = share.hex()
    out = rust("check-prio3", {"vdaf": obj, "vectors": [vec, broken]})
    assert out["results"][0] == {"ok": True}, out["results"][0]
    assert out["results"][1]["ok"] is False, out["results"][1]


@pytest.mark.parametrize("obj", PRIO3, ids=IDS)
def test_prio_shards_dap_vdaf_prepares(obj: dict) -> None:
    rng = random.Random(7)
    ms = [random_measurement(obj, rng) for _ in range(N)]
    reports = rust("shard", {"vdaf": obj, "measurements": ms})["reports"]
    vdaf = vdaf_of(obj)
    verify_key = os.urandom(16)
    outs = []
    for r in reports:
        p = py_prepare(vdaf, verify_key, None, bytes.fromhex(r["nonce"]), bytes.fromhex(r["public_share"]),
                       [bytes.fromhex(s) for s in r["input_shares"]])
        outs.append(p["outs"])
    agg = [vdaf.aggregate(None, [o[j] for o in outs]) for j in range(2)]
    result = VdafParams.from_interop(obj).result_to_interop(vdaf.unshard(None, agg, N))
    assert result == expected_result(obj, ms)


@pytest.mark.parametrize("obj", PRIO3, ids=IDS)
def test_dap_vdaf_shards_prio_prepares_byte_for_byte(obj: dict) -> None:
    rng = random.Random(8)
    ms = [random_measurement(obj, rng) for _ in range(N)]
    vdaf = vdaf_of(obj)
    verify_key = os.urandom(16)
    reports, mine = [], []
    for m in ms:
        nonce = os.urandom(16)
        public_share, shares = vdaf.shard_encoded(py_measurement(obj, m), nonce, os.urandom(vdaf.RAND_SIZE))
        reports.append({"nonce": hx(nonce), "public_share": hx(public_share), "input_shares": [hx(s) for s in shares]})
        mine.append(py_prepare(vdaf, verify_key, None, nonce, public_share, shares))
    out = rust("prepare", {"vdaf": obj, "verify_key": hx(verify_key), "reports": reports})
    assert out["report_count"] == N
    for theirs, ours in zip(out["reports"], mine, strict=True):
        assert "error" not in theirs, theirs
        for key in ("prep_shares", "prep_messages", "out_shares"):
            assert theirs[key] == ours[key], key
    agg = [vdaf.aggregate(None, [p["outs"][j] for p in mine]) for j in range(2)]
    assert out["agg_shares"] == [hx(vdaf.encode_agg_share(a)) for a in agg]
    result = rust("unshard", {"vdaf": obj, "agg_shares": out["agg_shares"], "report_count": N})["result"]
    assert result == expected_result(obj, ms)


def test_prio_refuses_a_report_prepared_with_another_verify_key() -> None:
    obj = {"type": "Prio3Histogram", "length": "12", "chunk_length": "4"}
    reports = rust("shard", {"vdaf": obj, "measurements": ["3"]})["reports"]
    out = rust("prepare", {"vdaf": obj, "verify_key": hx(os.urandom(16)), "reports": reports})
    assert out["report_count"] == 1  # a random key still verifies an honest proof
    tampered = dict(reports[0])
    share = bytearray.fromhex(tampered["input_shares"][0])
    share[3] ^= 0x40  # the Leader's measurement share: the proof no longer verifies
    tampered["input_shares"] = [share.hex(), tampered["input_shares"][1]]
    out = rust("prepare", {"vdaf": obj, "verify_key": hx(os.urandom(16)), "reports": [tampered]})
    assert out["report_count"] == 0 and "error" in out["reports"][0], out


# --- Poplar1 -------------------------------------------------------------------------------------


def _agg_param(vdaf: Any, level: int, prefixes: list[int]) -> bytes:
    return vdaf.encode_agg_param(Poplar1AggParam(level, tuple(prefixes)))


@pytest.mark.parametrize("name", ["Poplar1_0", "Poplar1_1", "Poplar1_2", "Poplar1_3"])
def test_prio_prepares_the_official_poplar1_vectors(name: str) -> None:
    vec = load(f"{name}.json")
    obj = {"type": "Poplar1", "bits": str(vec["bits"])}
    vdaf = vdaf_of(obj)
    level, prefixes = vec["agg_param"]
    param = _agg_param(vdaf, level, prefixes)
    reports = [{k: case[k] for k in ("nonce", "public_share", "input_shares")} for case in vec["prep"]]
    out = rust("prepare", {"vdaf": obj, "verify_key": vec["verify_key"], "agg_param": hx(param), "reports": reports})
    for theirs, case in zip(out["reports"], vec["prep"], strict=True):
        assert "error" not in theirs, theirs
        assert theirs["prep_shares"] == case["prep_shares"]
        assert theirs["prep_messages"] == case["prep_messages"]
        assert theirs["out_shares"] == ["".join(o) for o in case["out_shares"]]
    assert out["agg_shares"] == vec["agg_shares"]
    result = rust("unshard", {"vdaf": obj, "agg_param": hx(param), "agg_shares": out["agg_shares"],
                              "report_count": len(reports)})["result"]
    assert result == [str(c) for c in vec["agg_result"]]


POPLAR1_BITS = 6
WORDS = ["101101", "101101", "101100", "000111", "101101", "011010"]
LEVELS = [(0, [0, 1]), (2, [0b000, 0b011, 0b101]), (5, [0b101100, 0b101101, 0b111111])]


def _counts(level: int, prefixes: list[int]) -> list[str]:
    return [str(sum(int(w[: level + 1], 2) == p for w in WORDS)) for p in prefixes]


def test_poplar1_prio_shards_dap_vdaf_prepares() -> None:
    obj = {"type": "Poplar1", "bits": str(POPLAR1_BITS)}
    vdaf = vdaf_of(obj)
    reports = rust("shard", {"vdaf": obj, "measurements": [[c == "1" for c in w] for w in WORDS]})["reports"]
    verify_key = os.urandom(16)
    for level, prefixes in LEVELS:
        param = vdaf.decode_agg_param(_agg_param(vdaf, level, prefixes))
        outs = [py_prepare(vdaf, verify_key, param, bytes.fromhex(r["nonce"]), bytes.fromhex(r["public_share"]),
                           [bytes.fromhex(s) for s in r["input_shares"]])["outs"] for r in reports]
        agg = [vdaf.aggregate(param, [o[j] for o in outs]) for j in range(2)]
        assert [str(c) for c in vdaf.unshard(param, agg, len(WORDS))] == _counts(level, prefixes)


def test_poplar1_dap_vdaf_shards_prio_prepares_byte_for_byte() -> None:
    obj = {"type": "Poplar1", "bits": str(POPLAR1_BITS)}
    vdaf = vdaf_of(obj)
    verify_key = os.urandom(16)
    reports = []
    for w in WORDS:
        nonce = os.urandom(16)
        public_share, shares = vdaf.shard_encoded(tuple(c == "1" for c in w), nonce, os.urandom(vdaf.RAND_SIZE))
        reports.append((nonce, public_share, shares))
    wire = [{"nonce": hx(n), "public_share": hx(p), "input_shares": [hx(s) for s in ss]} for n, p, ss in reports]
    for level, prefixes in LEVELS:
        encoded = _agg_param(vdaf, level, prefixes)
        param = vdaf.decode_agg_param(encoded)
        mine = [py_prepare(vdaf, verify_key, param, n, p, ss) for n, p, ss in reports]
        out = rust("prepare", {"vdaf": obj, "verify_key": hx(verify_key), "agg_param": hx(encoded), "reports": wire})
        for theirs, ours in zip(out["reports"], mine, strict=True):
            assert "error" not in theirs, theirs
            for key in ("prep_shares", "prep_messages", "out_shares"):
                assert theirs[key] == ours[key], (level, key)
        agg = [vdaf.aggregate(param, [p["outs"][j] for p in mine]) for j in range(2)]
        assert out["agg_shares"] == [hx(vdaf.encode_agg_share(a)) for a in agg]
        result = rust("unshard", {"vdaf": obj, "agg_param": hx(encoded), "agg_shares": out["agg_shares"],
                                  "report_count": len(WORDS)})["result"]
        assert result == _counts(level, prefixes)
