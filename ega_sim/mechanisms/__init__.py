"""Mechanisms = allocator + payment rule, named "ALLOCATOR/PAYMENT"."""

from ega_sim.mechanisms.base import Allocation, Outcome
from ega_sim.mechanisms.mechanism import RankMechanism
from ega_sim.mechanisms.registry import make_mechanism, mechanism_names

__all__ = ["Allocation", "Outcome", "RankMechanism", "make_mechanism", "mechanism_names"]
