"""Token-level bidding (EGA-V2 section 3.3): bids enter the generator's code-by-code softmax.

At level l of an item's semantic ID, the candidates still allowed and sharing the prefix chosen
so far compete code by code. A code's bid is the MAX bid of the allowed candidates under it (the
ablation takes the mean); its weight is w = bid^alpha + beta (organic-only codes: bid 0, so
w = beta for alpha > 0, hence beta > 0); the code's probability is softmax(logit + log w) over
the codes present among those candidates. An item's allocation probability z is the product
over its levels.

With the generator's linear code heads (generator.py) everything is per (beam, candidate):
`item_log_probs` costs a few [beams, I, I] masked reductions per level, I = N + M candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BiddingConfig:
    alpha: float = 1.2
    beta: float = 2.0
    code_bid: str = "max"  # "max" (the paper) or "mean" (its ablation)

    def __post_init__(self) -> None:
        if not self.alpha >= 0:
            raise ValueError(f"alpha: expected a number >= 0, got {self.alpha!r}")
        if not self.beta > 0:
            # Organic-only codes weigh beta: at 0 no organic item could be generated, yet a list
            # needs them (at most max_ads ads), and every beam would end at log-probability -inf.
            raise ValueError(
                f"beta: expected a number > 0 (organic items weigh beta), got {self.beta!r}"
            )
        if self.code_bid not in ("max", "mean"):
            raise ValueError(f"code_bid: expected 'max' or 'mean', got {self.code_bid!r}")


def shared_prefix(codes: torch.Tensor) -> torch.Tensor:
    """[B, I, L] codes -> [B, L + 1, I, I] bool: items i, j share their first l codes."""
    equal = codes.unsqueeze(2) == codes.unsqueeze(1)  # [B, I, I, L]
    running = torch.cumprod(equal.to(torch.uint8), dim=3).bool()
    everyone = torch.ones_like(equal[..., :1])
    return torch.cat([everyone, running], dim=3).permute(0, 3, 1, 2)


def code_weights(
    bids: torch.Tensor, group: torch.Tensor, allowed: torch.Tensor, config: BiddingConfig
) -> torch.Tensor:
    """w = bid^alpha + beta of each candidate's code [S, I], where the code's bid is the max
    (or mean) bid of the allowed candidates in its group [S, I, I]."""
    members = group & allowed.unsqueeze(1)  # [S, I, I]
    if config.code_bid == "max":
        code_bid = torch.where(members, bids.unsqueeze(1), 0.0).amax(dim=2)
    else:
        code_bid = (members * bids.unsqueeze(1)).sum(2) / members.sum(2).clamp(min=1)
    if config.alpha == 0:
        return torch.full_like(code_bid, 1.0 + config.beta)  # 0^0 = 1: bids do not matter
    return code_bid.clamp(min=0) ** config.alpha + config.beta


def item_log_probs(
    code_scores: torch.Tensor,
    prefix: torch.Tensor,
    bids: torch.Tensor,
    allowed: torch.Tensor,
    config: BiddingConfig | None,
) -> torch.Tensor:
    """log z [S, I] of every allowed candidate (-inf elsewhere) for S decoder states.

    code_scores [S, I, L]: the generator's logit of each candidate's own code at each level
    (state . E_l[code] + prefix bias); prefix [S, L + 1, I, I] from `shared_prefix`; bids [S, I]
    (0 for organic items); allowed [S, I]; config None: no bids (the GR baseline).
    """
    levels = code_scores.shape[2]
    index = torch.arange(allowed.shape[1], device=allowed.device)
    earlier = index.unsqueeze(0) < index.unsqueeze(1)  # [I, I]: j before i
    log_z = torch.zeros_like(code_scores[..., 0])
    for level in range(levels):  # L is 3-5; everything inside is batched
        group = prefix[:, level + 1]  # [S, I, I] same code at this level and before
        score = code_scores[..., level]  # [S, I]
        if config is not None:
            score = score + torch.log(code_weights(bids, group, allowed, config))
        # One representative per (prefix, code) group: its lowest-index allowed member.
        shadowed = (group & allowed.unsqueeze(1) & earlier).any(dim=2)
        representative = allowed & ~shadowed  # [S, I]
        siblings = prefix[:, level] & representative.unsqueeze(1)  # [S, I, I]
        normalizer = torch.logsumexp(torch.where(siblings, score.unsqueeze(1), -torch.inf), dim=2)
        log_z = log_z + score - normalizer
    return torch.where(allowed, log_z, -torch.inf)
