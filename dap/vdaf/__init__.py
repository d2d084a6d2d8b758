"""VDAF-08: fields, XOFs, the generic FLP, Prio3 and the ping-pong topology.

    field       Field64, Field128 (elements are plain ints, vectors list[int])
    xof         Xof interface, XofTurboShake128, format_dst
    ntt         radix-2 NTTs used by the FLP
    flp         gadgets (Mul, Range2, PolyEval, ParallelSum), Valid, FlpGeneric
    circuits    Count, Sum, SumVec, Histogram, MultiHotHistogram
    prio3       Prio3 and its instances (Prio3Count(), Prio3Sum(bits), ...)
    pingpong    ping_pong_* functions and the Continued/Finished/Rejected states
    params      VdafParams: interop API VDAF objects, measurements, results

Every invalid input raises dap.errors.VdafError.
"""

from dap.vdaf.params import VdafParams, vdaf_from_interop
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
