"""The allocators of position auctions: `cascade` (rank by q*b) and `myerson` (by q*phi(b))."""

from __future__ import annotations

import torch

from ega_sim.config.scenario import PositionAuctionConfig
from ega_sim.mechanisms.rank import RankByScoreAllocator
from ega_sim.mechanisms.score import MonotoneScore, virtual_value_score


def make_cascade(scenario: PositionAuctionConfig) -> RankByScoreAllocator:
    """Rank by score q_i * b_i; bids below the scenario's reserve and scores below its eCPM
    floor lose."""
    return RankByScoreAllocator(
        "cascade",
        scenario.slot_ctr,
        MonotoneScore.make_identity(),
        scenario.reserve,
        reserve_score=scenario.ecpm_floor,
    )


def make_myerson(scenario: PositionAuctionConfig) -> RankByScoreAllocator:
    """Rank by q_i * (ironed) virtual value, with Myerson's reserve: the lowest bid whose
    virtual value is >= 0 (1/2 for U[0, 1]). The scenario's `reserve` and `ecpm_floor` are
    ignored: the optimal auction sets its own."""
    score = virtual_value_score(scenario.values)
    zero = torch.zeros(1, dtype=torch.float64)
    reserve = float(score.inverse(zero, upper=torch.zeros(1, dtype=torch.bool)))
    return RankByScoreAllocator("myerson", scenario.slot_ctr, score, max(reserve, 0.0))


ALLOCATORS = {"cascade": make_cascade, "myerson": make_myerson}
