"""Capacity models: what a pool's queue does at given arrival rates and service times — Erlang C
for the closed form, a discrete-event simulation running a slot policy for the rest. Pure; used to
preview a change's impact before it is applied (`tidemesh config plan`) and checked against the
mesh itself by `make bench` (suite `capacity`)."""

from mesh.capacity._preview import ClassPreview, Load, PoolPreview, preview
from mesh.capacity._queueing import MMc, erlang_c
from mesh.capacity._simulate import ClassLoad, ClassResult, FifoSlots, Policy, SimResult, fifo, simulate

__all__ = [
    "ClassLoad",
    "ClassPreview",
    "ClassResult",
    "FifoSlots",
    "Load",
    "MMc",
    "Policy",
    "PoolPreview",
    "SimResult",
    "erlang_c",
    "fifo",
    "preview",
    "simulate",
]
