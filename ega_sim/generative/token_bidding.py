"""Token-level bidding (EGA-V2 section 3.3): bids enter the generator's code-by-code softmax.

At level l of an item's semantic ID, the candidates still allowed and sharing the prefix chosen
so far compete code by code. A code's bid is the MAX bid of the allowed candidates under it (the
ablation takes the mean); its weight is w = (bid / bid_unit)^alpha + beta (organic-only codes:
bid 0, so w = beta for alpha > 0, hence beta > 0); the code's probability is
softmax(logit + log w) over the codes present among those candidates. An item's allocation
probability z is the product over its levels.

bid_unit is ours: the paper writes bid^alpha in its own currency unit, where bids are large
against beta = 2 (a Meituan cost per click of about a yuan is 100 in cents). In a market whose
values are about 1 per click, bid^1.2 + 2 is dominated by beta and bids barely move a list; a
bid_unit of a hundredth of the mean value per click puts the bid term back on the paper's
footing (bid / bid_unit of about 100). The default 1 is the paper's formula on our bids.

The candidates' prefix groups are a tree fixed per request (`code_tree`): group l of item i is
the set of candidates sharing i's first l + 1 codes, named by its lowest-index member. Every
level is then a few scatters over [rows, I] (code bid per group, log-sum-exp per parent group),
with no [I, I] pairwise masks, I = N + M candidates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BiddingConfig:
    alpha: float = 1.2
    beta: float = 2.0
    code_bid: str = "max"  # "max" (the paper) or "mean" (its ablation)
    bid_unit: float = 1.0  # bids enter as bid / bid_unit (module docstring)

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
        if isinstance(self.bid_unit, bool) or not (
            isinstance(self.bid_unit, int | float) and 0 < self.bid_unit < float("inf")
        ):
            raise ValueError(f"bid_unit: expected a number > 0, got {self.bid_unit!r}")


@dataclass(frozen=True)
class CodeTree:
    """The prefix groups of a request's candidates: `group[..., l, i]` is the lowest index of
    the candidates sharing item i's codes 0..l, `parent[..., l, i]` that of codes 0..l-1 (0 at
    level 0: every candidate). Leading dimensions: requests, or rows (`rows`)."""

    group: torch.Tensor  # [..., L, I] long
    parent: torch.Tensor  # [..., L, I] long

    def rows(self, index: torch.Tensor) -> CodeTree:
        """The tree of each row's request: index [R] -> [R, L, I]."""
        return CodeTree(self.group[index], self.parent[index])


def code_tree(codes: torch.Tensor) -> CodeTree:
    """codes [B, I, L] -> the prefix groups of every level (one [B, I, I] comparison)."""
    equal = codes.unsqueeze(2) == codes.unsqueeze(1)  # [B, I, I, L]
    same_prefix = torch.cumprod(equal.to(torch.uint8), dim=3).bool()  # codes 0..l equal
    # The first True along j is the lowest-index member (i itself at the latest).
    group = same_prefix.to(torch.uint8).argmax(dim=2).transpose(1, 2)  # [B, L, I]
    root = torch.zeros_like(group[:, :1])
    return CodeTree(group=group, parent=torch.cat([root, group[:, :-1]], dim=1))


def member_weights(bids: torch.Tensor, config: BiddingConfig) -> torch.Tensor:
    """What each candidate's bid [R, I] brings to its code's bid: bid^alpha for the max rule
    (max of bid^alpha = (max bid)^alpha, alpha >= 0), the bid itself for the mean rule."""
    if config.code_bid == "max" and config.alpha > 0:
        return (bids / config.bid_unit).clamp(min=0) ** config.alpha
    return bids / config.bid_unit


def code_weights(
    weights: torch.Tensor,
    group: torch.Tensor,
    allowed: torch.Tensor,
    config: BiddingConfig,
    zeros: torch.Tensor,
) -> torch.Tensor:
    """w = bid^alpha + beta of each group (indexed by group name, like zeros [R, I]), where the
    code's bid is the max (or mean) bid of the allowed members of the group; weights [R, A]
    from `member_weights` (0 where not allowed), group [R, A] names each member's group."""
    if config.alpha == 0:
        return torch.full_like(zeros, 1.0 + config.beta)  # 0^0 = 1: bids do not matter
    if config.code_bid == "max":
        return zeros.scatter_reduce(1, group, weights, "amax") + config.beta
    total = zeros.scatter_add(1, group, weights)
    count = zeros.scatter_add(1, group, allowed.to(weights.dtype))
    return (total / count.clamp(min=1)).clamp(min=0) ** config.alpha + config.beta


@dataclass(frozen=True)
class Levels:
    """The bid-free part of the hierarchical softmax of R states, over each state's allowed
    candidates only (organic items other than the next one, used items and ads past max_ads
    take no part): A columns, the allowed candidates in index order, then padding."""

    candidate: torch.Tensor  # [R, A] long candidate index (padding: any, `valid` False)
    valid: torch.Tensor  # [R, A] bool
    group: torch.Tensor  # [R, L, A] long group name of each column's candidate
    parent: torch.Tensor  # [R, L, A] long its parent group's name
    score: torch.Tensor  # [R, L, A] the score of the candidate's group
    head: torch.Tensor  # [R, L, A] bool: the first allowed member of its group

    def rows(self, index: torch.Tensor) -> Levels:
        return Levels(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def prepare_levels(code_scores: torch.Tensor, tree: CodeTree, allowed: torch.Tensor) -> Levels:
    """Levels of R states: code_scores [R, I, L], tree [R, L, I], allowed [R, I]."""
    n_items = allowed.shape[1]
    width = max(int(allowed.sum(1).max()), 1) if allowed.numel() else 1
    candidate = torch.argsort((~allowed).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = allowed.gather(1, candidate)  # [R, A]
    columns = candidate.unsqueeze(1).expand(-1, tree.group.shape[1], -1)  # [R, L, A]
    group, parent = tree.group.gather(2, columns), tree.parent.gather(2, columns)
    score = code_scores.transpose(1, 2).gather(2, columns)  # equal within a group
    # The first allowed member of each group (by index) stands for the group.
    index = torch.where(valid, candidate, n_items).unsqueeze(1).expand_as(group)
    first = torch.full(
        (*group.shape[:2], n_items), n_items, dtype=group.dtype, device=group.device
    ).scatter_reduce(2, group, index, "amin")
    head = valid.unsqueeze(1) & (first.gather(2, group) == candidate.unsqueeze(1))
    return Levels(candidate, valid, group, parent, score, head)


def item_log_probs(
    code_scores: torch.Tensor,
    tree: CodeTree,
    bids: torch.Tensor,
    allowed: torch.Tensor,
    config: BiddingConfig | None,
) -> torch.Tensor:
    """log z [R, I] of every allowed candidate (-inf elsewhere) for R decoder states.

    code_scores [R, I, L]: the generator's logit of each candidate's own code at each level
    (state . E_l[code] + prefix bias; equal within a group); tree: each row's `code_tree`
    [R, L, I]; bids [R, I] (0 for organic items); allowed [R, I]; config None: no bids (the
    GR baseline).
    """
    levels = prepare_levels(code_scores, tree, allowed)
    weights = None if config is None else member_weights(bids, config)
    log_z = log_probs_from_levels(levels, weights, config, allowed.shape[1])  # [R, A]
    full = torch.full_like(code_scores[..., 0], -torch.inf)
    return full.scatter(1, levels.candidate, torch.where(levels.valid, log_z, -torch.inf))


def log_probs_from_levels(
    levels: Levels, weights: torch.Tensor | None, config: BiddingConfig | None, n_items: int
) -> torch.Tensor:
    """log z [R, A] of the allowed candidates (-inf on padding) from the bid-free part (shared
    by the rows of one state) and each row's member weights [R, I] (None: no bids); group
    names range over the I candidates."""
    rows = levels.valid.shape[0]
    member = None
    if config is not None:
        member = torch.where(levels.valid, weights.gather(1, levels.candidate), 0.0)
    log_z = torch.zeros_like(levels.score[:, 0])
    zeros = levels.score.new_zeros((rows, n_items))
    for level in range(levels.score.shape[1]):  # L is 3-5; everything inside is batched
        group, parent = levels.group[:, level], levels.parent[:, level]  # [R, A] group names
        value, head = levels.score[:, level], levels.head[:, level]
        if config is not None:
            log_weight = torch.log(code_weights(member, group, levels.valid, config, zeros))
            value = value + log_weight.gather(1, group)
        # log-sum-exp over each parent's competing groups, by scatter; the masks keep every
        # intermediate finite, so gradients (alignment trains through this) never see NaN.
        top = torch.full_like(zeros, -torch.inf).scatter_reduce(
            1, parent, torch.where(head, value, -torch.inf), "amax"
        )
        shift = top.nan_to_num(neginf=0.0).gather(1, parent)
        weight = torch.where(head, torch.exp(torch.where(head, value - shift, 0.0)), 0.0)
        total = zeros.scatter_add(1, parent, weight).gather(1, parent)
        normalizer = shift + torch.log(torch.where(total > 0, total, 1.0))
        log_z = log_z + value - normalizer
    return torch.where(levels.valid, log_z, -torch.inf)
