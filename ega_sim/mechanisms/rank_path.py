"""Which path a rank auction runs: the compiled kernel (mechanisms/rank_kernel.py) or torch.

Both give the same outputs bit for bit (tests/test_rank_kernel.py). The kernel runs gsp, vcg,
threshold and first price of a `RankMechanism` that ranks by q * b (cascade), and their exact
regret in a separable world, on float64 CPU batches; torch runs everything else (a GPU,
float32, myerson's virtual-value ranking, a learned price, the dense and grid searches) and is
the reference. `measure_outcome`'s per-slot work (metrics/outcomes.py) runs on a kernel too,
for any mechanism's float64 CPU outcome, where the rank kernel runs (`measures_on_kernel`).
The mode:

- `auto` (default): the kernel for batches of at least KERNEL_MIN_REQUESTS requests when numba
  imports, once this process has run AUTO_AFTER_REQUESTS requests of such batches on torch (a
  run and its regret search each count). Loading the kernels (numba's import and the compiled
  code from its cache: about 0.5 s and 110 MB once per process; compiling, the first time on
  a machine, about 8 s, and 3 s for the regret search at each new number of slots K) costs
  about what torch spends on 200,000 requests with exact regret,
  so a short run never pays it and a long one pays it once; the outputs are the same;
- `kernel`: the kernel for every batch it can run (a RuntimeError if numba is missing);
- `torch`: never the kernel.

Either mode uses the kernels for a mechanism only once `RankMechanism.kernel_trusted` says they
reproduce torch bit for bit on a small batch on this machine (rank_kernel_check.py).

Set it with the environment variable EGA_SIM_RANK_PATH or, in Python, `with rank_path("torch"):`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch

MODES = ("auto", "kernel", "torch")
KERNEL_MIN_REQUESTS = 2_048
AUTO_AFTER_REQUESTS = 250_000  # requests of eligible batches run on torch before auto loads
ENVIRONMENT_VARIABLE = "EGA_SIM_RANK_PATH"
_RULE_CODES = {"gsp": 0, "vcg": 1, "threshold": 2, "first": 3}  # rank_kernel's codes

_mode: str | None = None  # set by `rank_path`; None: the environment variable decides
_eligible_requests = 0  # requests of kernel-eligible batches this process has run (auto)


def check_mode(mode: str, where: str = "rank path") -> str:
    """`mode` if it is one of MODES (ValueError naming `where` otherwise)."""
    if mode not in MODES:
        raise ValueError(f"{where}: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


def current_mode() -> str:
    """The mode in force: `rank_path`'s, else EGA_SIM_RANK_PATH's, else auto."""
    if _mode is not None:
        return _mode
    return check_mode(os.environ.get(ENVIRONMENT_VARIABLE, "auto"), ENVIRONMENT_VARIABLE)


@contextmanager
def rank_path(mode: str) -> Iterator[None]:
    """Run rank auctions inside the block on the path `mode` (auto, kernel or torch)."""
    global _mode
    previous, _mode = _mode, check_mode(mode)
    try:
        yield
    finally:
        _mode = previous


@cache
def _kernels():
    """The kernel module, or None when numba does not import."""
    try:
        from ega_sim.mechanisms import rank_kernel
    except ImportError:
        return None
    return rank_kernel


def kernel_available() -> bool:
    """Whether numba imports (the kernel path exists on this machine)."""
    return _kernels() is not None


def describe() -> str:
    """The path a large float64 CPU batch takes now, in words (bench and --help output)."""
    mode = current_mode()
    if mode == "torch":
        return "torch (sort)"
    if not kernel_available():
        return "torch (sort; numba not installed)"
    import numba

    if mode == "kernel":
        return f"numba {numba.__version__} kernel (every batch)"
    return (
        f"numba {numba.__version__} kernel (batches >= {KERNEL_MIN_REQUESTS:,} requests, after "
        f"the first {AUTO_AFTER_REQUESTS:,} of them on torch)"
    )


def uses_kernel(mechanism, bids: torch.Tensor, requests=None) -> bool:
    """Whether `mechanism` runs `bids` [B, N] (of `requests`, when given) on the kernel: float64
    CPU tensors that need no gradient (module docstring), once the kernels are trusted for it
    (`RankMechanism.kernel_trusted`)."""
    mode = current_mode()
    rule = getattr(mechanism, "payment_rule", None)
    if mode == "torch" or not getattr(rule, "from_ranking", False) or rule.name not in _RULE_CODES:
        return False
    if not mechanism.allocator.score_function.identity:  # myerson: torch
        return False
    tensors = [bids] if requests is None else [bids, requests.value_per_click, requests.quality]
    runnable = _runnable(tensors)
    if mode == "kernel":
        _require_numba()
        return runnable and mechanism.kernel_trusted()
    if not runnable or bids.shape[0] < KERNEL_MIN_REQUESTS:
        return False
    global _eligible_requests
    if _eligible_requests < AUTO_AFTER_REQUESTS:  # a short run: torch, no kernel load
        _eligible_requests += bids.shape[0]
        return False
    return kernel_available() and mechanism.kernel_trusted()


def _require_numba() -> None:
    """The `kernel` mode without numba: a RuntimeError that says so."""
    if not kernel_available():
        raise RuntimeError(f"{ENVIRONMENT_VARIABLE}=kernel: numba is not installed")


def _runnable(tensors) -> bool:
    """Whether the kernels can take these tensors: float64, on the CPU, needing no gradient."""
    return all(
        t.device.type == "cpu" and t.dtype == torch.float64 and not t.requires_grad for t in tensors
    )


def measures_on_kernel(values: torch.Tensor, *tensors: torch.Tensor) -> bool:
    """Whether `measure_outcome` may take the kernel for `values` [B, N] and the outcome's
    other tensors: float64 CPU tensors that need no gradient, in the `kernel` mode, or in
    `auto` once this process runs rank auctions on the kernel (so no other run loads numba
    for it)."""
    mode = current_mode()
    if mode == "torch" or not _runnable([values, *tensors]):
        return False
    if mode == "kernel":
        _require_numba()
        return True
    return (
        values.shape[0] >= KERNEL_MIN_REQUESTS
        and _eligible_requests >= AUTO_AFTER_REQUESTS
        and kernel_available()
    )


def _rows(buffer: torch.Tensor, batch: int, *widths: int) -> list[torch.Tensor]:
    """`buffer` [B * sum(widths)] cut into C-contiguous [B, width] views, one per width."""
    return [
        part.view(batch, width)
        for part, width in zip(buffer.split([batch * w for w in widths]), widths, strict=True)
    ]


@cache
def _ctr_array(slot_ctr: tuple[float, ...]) -> np.ndarray:
    """alpha_k [K] as float64, made once per allocator's CTRs (the kernels never write it)."""
    return np.array(slot_ctr, dtype=np.float64)


def kernel_run(mechanism, requests, bids: torch.Tensor):
    """`RankMechanism.run`'s allocation and prices per click [B, K] on the kernel, or None if
    a bid is not a finite number >= 0 (the caller raises check_bids' error)."""
    from ega_sim.mechanisms.rank import RankAllocation

    allocator = mechanism.allocator
    batch, n_bidders = bids.shape
    n_slots = allocator.n_slots
    ranks = min(n_bidders, n_slots + 1)
    # Two allocations instead of six, cut into C-contiguous [B, width] views.
    floats = torch.empty(batch * (n_bidders + ranks + 2 * n_slots), dtype=bids.dtype)
    score, top_score, slot_ctr_model, price = _rows(
        floats, batch, n_bidders, ranks, n_slots, n_slots
    )
    order, slot_bidder = _rows(
        torch.empty(batch * (ranks + n_slots), dtype=torch.long), batch, ranks, n_slots
    )
    status = _kernels().rank_auction(
        requests.quality.contiguous().numpy(),
        bids.contiguous().numpy(),
        _ctr_array(allocator.slot_ctr_values),
        _RULE_CODES[mechanism.payment_rule.name],
        allocator.reserve_per_click,
        allocator.reserve_score,
        score.numpy(),  # [B, N]: q * g(b), -inf below a reserve
        order.numpy(),  # [B, T]
        top_score.numpy(),  # [B, T]
        slot_bidder.numpy(),  # [B, K]
        slot_ctr_model.numpy(),  # [B, K]
        price.numpy(),  # [B, K]
    )
    if status:
        return None
    return RankAllocation(slot_bidder, slot_ctr_model, order, score, top_score), price


def kernel_best_misreports(
    mechanism, world, requests, bids: torch.Tensor, allocation, nudge: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each bidder's best exact-candidate misreport and its utility, both [B, N], in a
    separable world (`world.slot_ctr` [K]), or None if a ranked score is +inf (q * b overflowed;
    the caller searches on torch); `allocation`: the RankAllocation of `bids`; `nudge`: the
    candidates' relative step above a threshold (metrics.regret.EXACT_NUDGE).
    ValueError if the world and the allocator have different numbers of slots."""
    allocator = mechanism.allocator
    click_ctr = tuple(world.slot_ctr.tolist())  # a tuple: K is compiled in (rank_kernel.py)
    if len(click_ctr) != allocator.n_slots:
        raise ValueError(
            f"{mechanism.name}: the world has {len(click_ctr)} slots, the allocator "
            f"{allocator.n_slots}"
        )
    best_bid = torch.empty(bids.shape, dtype=bids.dtype)  # [B, N]
    best_utility = torch.empty(bids.shape, dtype=bids.dtype)  # [B, N]
    status = _kernels().best_misreports(
        requests.value_per_click.contiguous().numpy(),
        requests.quality.contiguous().numpy(),
        allocation.order.contiguous().numpy(),
        allocation.top_score.contiguous().numpy(),
        _ctr_array(allocator.slot_ctr_values),
        click_ctr,
        _RULE_CODES[mechanism.payment_rule.name],
        allocator.reserve_per_click,
        allocator.reserve_score,
        nudge,
        best_bid.numpy(),
        best_utility.numpy(),
    )
    if status:
        return None
    return best_bid, best_utility


def kernel_outcome(
    values: torch.Tensor,
    bids: torch.Tensor,
    outcome,
    expected_clicks: torch.Tensor,
    ir_tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`measure_outcome` on the kernel: the sums (revenue, welfare, clicks, model clicks, model
    revenue) [5, B], ads shown [B], each bidder's utility [B, N] and the IR violations [B] of
    an outcome (slot_bidder, price per click, model CTRs [B, K]) with `expected_clicks` [B, K]
    at `values` and `bids` [B, N]."""
    slot_bidder = outcome.slot_bidder
    batch, n_slots = slot_bidder.shape
    summed = n_slots <= _kernels().SUMMED_SLOTS  # the kernel sums; else torch, below
    sums = torch.empty((5, batch if summed else 0), dtype=values.dtype)
    terms = torch.empty((5, 0 if summed else batch, n_slots), dtype=values.dtype)
    ad_count, ir_violations = torch.empty((2, batch), dtype=values.dtype)
    utility = torch.empty(values.shape, dtype=values.dtype)  # [B, N]
    _kernels().outcome_terms(
        slot_bidder.to(torch.long).contiguous().numpy(),
        outcome.price_per_click.contiguous().numpy(),
        expected_clicks.contiguous().numpy(),
        outcome.allocation.slot_ctr_model.contiguous().numpy(),
        values.contiguous().numpy(),
        bids.contiguous().numpy(),
        ir_tolerance,
        sums.numpy(),
        terms.numpy(),
        ad_count.numpy(),
        utility.numpy(),
        ir_violations.numpy(),
    )
    return sums if summed else terms.sum(2), ad_count, utility, ir_violations
