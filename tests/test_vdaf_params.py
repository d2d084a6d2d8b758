"""Interop API VDAF objects, measurements and results <-> dap.vdaf instances."""

from __future__ import annotations

import pytest

from dap.errors import VdafError
from dap.vdaf import VdafParams, vdaf_from_interop
from dap.vdaf.prio3 import Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "Prio3Count"}, Prio3Count()),
        ({"type": "Prio3Sum", "bits": "8"}, Prio3Sum(8)),
        ({"type": "Prio3Sum", "bits": 64}, Prio3Sum(64)),
        ({"type": "Prio3SumVec", "bits": "8", "length": "10", "chunk_length": "12"}, Prio3SumVec(10, 8, 12)),
        ({"type": "Prio3Histogram", "length": "12", "chunk_length": "4"}, Prio3Histogram(12, 4)),
        ({"type": "Prio3Histogram", "length": 5, "chunk_length": 2}, Prio3Histogram(5, 2)),
    ],
)
def test_from_interop_builds_the_cached_instance(obj: dict, expected: object) -> None:
    params = VdafParams.from_interop(obj)
    assert params.build() is expected
    assert vdaf_from_interop(obj) is expected
    assert VdafParams.from_interop(params.to_interop()) == params
    assert all(isinstance(v, str) for v in params.to_interop().values())


def test_to_interop_shape() -> None:
    assert VdafParams.from_interop({"type": "Prio3Histogram", "length": 12, "chunk_length": "4"}).to_interop() == {
        "type": "Prio3Histogram",
        "length": "12",
        "chunk_length": "4",
    }


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"type": "Prio3Bogus"}, "unsupported VDAF type"),
        ({"type": "Poplar2", "bits": "4"}, "unsupported VDAF type"),
        ({}, "vdaf.type"),
        ("Prio3Count", "JSON object"),
        ({"type": "Prio3Histogram", "length": "12"}, "vdaf.chunk_length: required"),
        ({"type": "Prio3Sum"}, "vdaf.bits: required"),
        ({"type": "Prio3Sum", "bits": "0"}, r"vdaf.bits: must be an integer in \[1, 127\]"),
        ({"type": "Prio3Sum", "bits": "128"}, "vdaf.bits"),
        ({"type": "Prio3Sum", "bits": "-1"}, "decimal string"),
        ({"type": "Prio3Sum", "bits": "8.0"}, "decimal string"),
        ({"type": "Prio3Sum", "bits": " 8"}, "decimal string"),
        ({"type": "Prio3Sum", "bits": 8.0}, "decimal string"),
        ({"type": "Prio3Sum", "bits": True}, "decimal string"),
        ({"type": "Prio3Sum", "bits": "8", "length": "3"}, "unexpected key"),
        ({"type": "Prio3Histogram", "length": "0", "chunk_length": "1"}, "vdaf.length"),
        ({"type": "Prio3SumVec", "bits": "8", "length": "10", "chunk_length": "0"}, "vdaf.chunk_length"),
        ({"type": "Prio3SumVec", "bits": "8", "length": str(2**17), "chunk_length": "1"}, "vdaf.length"),
        ({"type": "Prio3SumVec", "bits": "8", "length": str(2**14), "chunk_length": "9"}, "length \\* bits"),
    ],
)
def test_from_interop_errors(obj: object, message: str) -> None:
    with pytest.raises(VdafError, match=message):
        VdafParams.from_interop(obj)  # type: ignore[arg-type]


def test_constructor_checks_parameters() -> None:
    with pytest.raises(VdafError, match="not a parameter"):
        VdafParams("Prio3Count", bits=3)
    with pytest.raises(VdafError, match="required"):
        VdafParams("Prio3SumVec", bits=3, length=2)


def test_measurements() -> None:
    count = VdafParams.from_interop({"type": "Prio3Count"})
    assert [count.measurement_from_interop(m) for m in ("0", "1", 1)] == [0, 1, 1]
    for bad in ("2", "true", True, None, "01x"):
        with pytest.raises(VdafError):
            count.measurement_from_interop(bad)
    assert count.measurement_to_interop(1) == "1"

    total = VdafParams.from_interop({"type": "Prio3Sum", "bits": "64"})
    assert total.measurement_from_interop("18446744073709551615") == 2**64 - 1
    with pytest.raises(VdafError, match="2\\^64"):
        total.measurement_from_interop(str(2**64))

    vec = VdafParams.from_interop({"type": "Prio3SumVec", "bits": "2", "length": "3", "chunk_length": "2"})
    assert vec.measurement_from_interop(["1", "3", 0]) == [1, 3, 0]
    assert vec.measurement_to_interop([1, 3, 0]) == ["1", "3", "0"]
    for bad in (["1", "4", "0"], ["1", "2"], "123", ["1", "-1", "0"]):
        with pytest.raises(VdafError):
            vec.measurement_from_interop(bad)

    hist = VdafParams.from_interop({"type": "Prio3Histogram", "length": "5", "chunk_length": "2"})
    assert hist.measurement_from_interop("4") == 4
    with pytest.raises(VdafError, match="bucket index"):
        hist.measurement_from_interop("5")


def test_results() -> None:
    count = VdafParams("Prio3Count")
    assert count.result_to_interop(7) == "7"
    assert count.result_from_interop("7") == 7
    hist = VdafParams("Prio3Histogram", length=3, chunk_length=2)
    assert hist.result_to_interop([0, 2, 5]) == ["0", "2", "5"]
    assert hist.result_from_interop(["0", "2", "5"]) == [0, 2, 5]
    with pytest.raises(VdafError):
        hist.result_from_interop("3")
