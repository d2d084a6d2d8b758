"""VDAF-08: fields, XOFs, the generic FLP, Prio3, Poplar1 and the ping-pong topology.

    field       Field64, Field128, Field255 (elements are plain ints, vectors list[int])
    xof         Xof interface, XofTurboShake128, XofFixedKeyAes128, format_dst
    ntt         radix-2 NTTs used by the FLP
    flp         gadgets (Mul, Range2, PolyEval, ParallelSum), Valid, FlpGeneric
    circuits    Count, Sum, SumVec, Histogram, MultiHotHistogram
    prio3       Prio3 and its instances (Prio3Count(), Prio3Sum(bits), ...)
    idpf        IdpfPoplar, the incremental DPF under Poplar1
    poplar1     Poplar1 (Poplar1.with_bits(n)) and its aggregation parameters
    pingpong    ping_pong_* functions and the Continued/Finished/Rejected states
    params      VdafParams: interop API VDAF objects, measurements, results

Every invalid input raises dap.errors.VdafError.
"""

from dap.vdaf.params import VdafParams, vdaf_from_interop
from dap.vdaf.poplar1 import Poplar1
from dap.vdaf.prio3 import (
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3MultiHotHistogram,
    Prio3Sum,
    Prio3SumVec,
    Prio3SumVecWithMultiproof,
)

__all__ = [
    "Poplar1",
    "Prio3",
    "Prio3Count",
    "Prio3Histogram",
    "Prio3MultiHotHistogram",
    "Prio3Sum",
    "Prio3SumVec",
    "Prio3SumVecWithMultiproof",
    "VdafParams",
    "vdaf_from_interop",
]
