"""The compiled rank kernel (mechanisms/rank_kernel.py) equals the torch path bit for bit.

On thousands of tie-heavy random profiles per scenario (tests/test_rank_prices.py's: bids and
qualities on small grids, so scores tie exactly; reserves and eCPM floors; fewer bidders than
slots; one slot; one bidder), for every payment rule the kernel runs: the allocation (slot
bidders, the first K + 1 ranks and their scores, every score, the model CTRs) and the prices
equal torch's sort-based path and the BidderView reference; each bidder's best exact misreport
and its utility equal the torch search's maximum over the same candidates (and its first
argmax). The outcome kernel gives `measure_outcome`'s figures bit for bit. Then the mode
switch, the errors, the checks that keep a disagreeing kernel out, and a whole `evaluate` on
both paths.
"""

from __future__ import annotations

import dataclasses
import zlib

import pytest
import torch

from ega_sim.evaluation import evaluate
from ega_sim.mechanisms import rank_path as path
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.metrics.regret import MisreportSpec, misreport_utility
from ega_sim.world.build import make_world
from ega_sim.world.position_auction import AuctionRequests
from tests.conftest import position_auction
from tests.test_rank_prices import RULES, SCENARIOS, tie_heavy

pytest.importorskip("numba")

CASCADE_SCENARIOS = [name for name in SCENARIOS if name != "bimodal_ironing"]


def _run_on(mode: str, mechanism, requests, bids):
    with path.rank_path(mode):
        return mechanism.run(requests, bids)


def _search_on(mode: str, mechanism, world, requests, bids, outcome):
    with path.rank_path(mode):
        return misreport_utility(
            MisreportSpec("exact"), mechanism, world, requests, bids, outcome=outcome
        )


@pytest.mark.parametrize("scenario", CASCADE_SCENARIOS)
def test_kernel_equals_torch_on_tie_heavy_profiles(scenario: str) -> None:
    config, top = SCENARIOS[scenario]
    world = make_world(config, "cpu")
    requests = tie_heavy(config.n_bidders, top, seed=zlib.crc32(f"kernel/{scenario}".encode()))
    bids = requests.value_per_click
    for rule in RULES:
        mechanism = make_mechanism(f"cascade/{rule}", world)
        with path.rank_path("kernel"):
            assert path.uses_kernel(mechanism, bids)
        kernel = _run_on("kernel", mechanism, requests, bids)
        torch_path = _run_on("torch", mechanism, requests, bids)
        reference = mechanism.reference_run(requests, bids)
        for field in ("slot_bidder", "slot_ctr_model", "order", "score", "top_score"):
            got = getattr(kernel.allocation, field)
            assert got.dtype == getattr(torch_path.allocation, field).dtype, field
            assert torch.equal(got, getattr(torch_path.allocation, field)), (rule, field)
        assert torch.equal(kernel.price_per_click, torch_path.price_per_click), rule
        assert torch.equal(kernel.price_per_click, reference.price_per_click), rule

        fast = _search_on("kernel", mechanism, world, requests, bids, kernel)
        slow = _search_on("torch", mechanism, world, requests, bids, torch_path)
        assert fast.utility.shape == (*bids.shape, 1)  # the best candidate only
        best, first_best = slow.utility.max(dim=2)  # [B, N]; ties: the first candidate
        assert torch.equal(fast.utility[..., 0], best), rule
        expected_bid = slow.misreports.gather(2, first_best.unsqueeze(2))[..., 0]
        assert torch.equal(fast.misreports[..., 0], expected_bid), rule
        # Without the run's outcome the kernel allocates for itself: the same answer.
        alone = _search_on("kernel", mechanism, world, requests, bids, None)
        assert torch.equal(alone.utility, fast.utility)


@pytest.mark.parametrize(
    ("n_bidders", "slot_ctr"), [(12, (1.0, 0.9, 0.8, 0.6, 0.5, 0.4, 0.2, 0.1)), (2, (1.0,) * 7)]
)
def test_kernel_equals_torch_at_many_slots(n_bidders: int, slot_ctr: tuple[float, ...]) -> None:
    """K is compiled into the regret search (its loops over slots unroll): K = 8 and K = 7
    with equal CTRs and two bidders, on a batch that is not a multiple of a block (LANES) and
    given as a non-contiguous (transposed) tensor, agree with torch too."""
    config = position_auction(n_bidders, slot_ctr, reserve=0.125, ecpm_floor=0.0625)
    world = make_world(config, "cpu")
    tied = tie_heavy(n_bidders, 1.0, seed=zlib.crc32(f"kernel/K{len(slot_ctr)}".encode()))
    rows = 2_011  # 31 blocks of 64 and 27 requests
    values = tied.value_per_click[:rows].T.contiguous().T  # same numbers, column-major
    requests = AuctionRequests(values, tied.quality[:rows])
    assert not values.is_contiguous()
    for rule in RULES:
        mechanism = make_mechanism(f"cascade/{rule}", world)
        kernel = _run_on("kernel", mechanism, requests, values)
        torch_path = _run_on("torch", mechanism, requests, values)
        assert torch.equal(kernel.allocation.order, torch_path.allocation.order), rule
        assert torch.equal(kernel.allocation.score, torch_path.allocation.score), rule
        assert torch.equal(kernel.price_per_click, torch_path.price_per_click), rule
        fast = _search_on("kernel", mechanism, world, requests, values, kernel)
        slow = _search_on("torch", mechanism, world, requests, values, torch_path)
        assert torch.equal(fast.utility[..., 0], slow.utility.max(dim=2).values), rule


def test_kernel_search_at_the_ends_of_the_doubles() -> None:
    """The search's `ahead_of` steps a tied competitor's score up one double: checked where
    that step is special, with bids of -0.0 (score -0.0), 0, the smallest subnormal and the
    largest double (scores tied with each other and with zero, prices that overflow): every
    rule equals torch. A
    score of +inf (impossible from AuctionRequests, whose q <= 1 keeps q * b finite) makes the
    kernel decline (None), so the caller searches on torch."""
    config = position_auction(5, (1.0, 0.75, 0.5), reserve=0.0)
    world = make_world(config, "cpu")
    generator = torch.Generator().manual_seed(7)
    ends = torch.tensor(
        [-0.0, 0.0, 5e-324, 1e-300, 0.5, 1.0, 1.7976931348623157e308], dtype=torch.float64
    )
    values = ends[torch.randint(0, 7, (3_000, 5), generator=generator)]  # [B, N]
    quality = torch.tensor([0.5, 1.0], dtype=torch.float64)[
        torch.randint(0, 2, (3_000, 5), generator=generator)
    ]
    requests = AuctionRequests(values, quality)
    assert bool(torch.signbit(values[values == 0]).any())  # some -0.0 bids
    for rule in RULES:
        mechanism = make_mechanism(f"cascade/{rule}", world)
        kernel = _run_on("kernel", mechanism, requests, values)
        torch_path = _run_on("torch", mechanism, requests, values)
        assert torch.equal(kernel.allocation.top_score, torch_path.allocation.top_score)
        fast = _search_on("kernel", mechanism, world, requests, values, kernel)
        slow = _search_on("torch", mechanism, world, requests, values, torch_path)
        best, first_best = slow.utility.max(dim=2)  # [B, N]; -inf where a price overflows
        assert torch.equal(fast.utility[..., 0], best), rule
        expected_bid = slow.misreports.gather(2, first_best.unsqueeze(2))[..., 0]
        assert torch.equal(fast.misreports[..., 0], expected_bid), rule
    allocation = kernel.allocation
    allocation.top_score[17, 0] = torch.inf
    with path.rank_path("kernel"):
        declined = path.kernel_best_misreports(mechanism, world, requests, values, allocation, 0.0)
    assert declined is None


def test_the_profiles_tie_and_reach_every_branch() -> None:
    """The property test is not vacuous: exact score ties among the top K + 1, empty slots,
    bidders below a reserve, and searches that find regret all occur."""
    config, top = SCENARIOS["reserve_and_floor"]
    world = make_world(config, "cpu")
    requests = tie_heavy(config.n_bidders, top, seed=zlib.crc32(b"kernel/reserve_and_floor"))
    bids = requests.value_per_click
    mechanism = make_mechanism("cascade/gsp", world)
    outcome = _run_on("kernel", mechanism, requests, bids)
    top_score = outcome.allocation.top_score
    finite = top_score > -torch.inf
    tied = ((top_score[:, 1:] == top_score[:, :-1]) & finite[:, 1:]).any(1)
    assert int(tied.sum()) > 100
    assert int((outcome.slot_bidder < 0).sum()) > 100
    assert int((outcome.allocation.score == -torch.inf).sum()) > 100
    search = _search_on("kernel", mechanism, world, requests, bids, outcome)
    utility = world.expected_clicks(requests, outcome.allocation)  # [B, K] clicks
    assert search.utility.isfinite().all() and utility.isfinite().all()


def test_bad_bids_raise_the_torch_paths_errors() -> None:
    world = make_world(position_auction(4, (1.0, 0.5)), "cpu")
    requests = world.sample_requests(3_000, torch.Generator().manual_seed(0))
    mechanism = make_mechanism("cascade/gsp", world)
    for bad, message in ((-0.5, "bids >= 0"), (torch.nan, "finite"), (torch.inf, "finite")):
        bids = requests.value_per_click.clone()
        bids[2_500, 3] = bad
        for mode in ("kernel", "torch"):
            with pytest.raises(ValueError, match=message), path.rank_path(mode):
                mechanism.run(requests, bids)
    with pytest.raises(TypeError, match="bids"), path.rank_path("kernel"):
        mechanism.run(requests, requests.value_per_click.long())


def test_which_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(position_auction(5, (1.0, 0.5)), "cpu")
    gsp = make_mechanism("cascade/gsp", world)
    small = torch.rand(path.KERNEL_MIN_REQUESTS - 1, 5, dtype=torch.float64)
    large = torch.rand(path.KERNEL_MIN_REQUESTS, 5, dtype=torch.float64)
    monkeypatch.delenv(path.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(path, "_eligible_requests", 0)
    assert path.current_mode() == "auto"
    # auto: torch until AUTO_AFTER_REQUESTS requests of eligible batches have run, then the
    # kernel; small batches, float32 and virtual values neither count nor switch.
    calls = -(-path.AUTO_AFTER_REQUESTS // large.shape[0])  # ceil
    for _ in range(calls):
        assert not path.uses_kernel(gsp, large)
        assert not path.uses_kernel(gsp, small)
        assert not path.uses_kernel(gsp, large.float())
    assert path.uses_kernel(gsp, large)
    assert not path.uses_kernel(gsp, small) and not path.uses_kernel(gsp, large.float())
    assert not path.uses_kernel(make_mechanism("myerson/gsp", world), large)  # virtual values
    assert not path.uses_kernel(gsp, large.clone().requires_grad_())  # autograd: torch
    mixed = AuctionRequests(large, large.float().clamp(min=0.5))  # float32 qualities
    assert not path.uses_kernel(gsp, large, mixed)
    assert path.uses_kernel(gsp, large, AuctionRequests(large, large.clamp(min=0.5)))
    assert f"after the first {path.AUTO_AFTER_REQUESTS:,}" in path.describe()
    with path.rank_path("kernel"):
        assert path.uses_kernel(gsp, small) and "every batch" in path.describe()
        with path.rank_path("torch"):
            assert not path.uses_kernel(gsp, large) and path.describe() == "torch (sort)"
        assert path.current_mode() == "kernel"
    monkeypatch.setenv(path.ENVIRONMENT_VARIABLE, "torch")
    assert not path.uses_kernel(gsp, large)
    monkeypatch.setenv(path.ENVIRONMENT_VARIABLE, "fast")
    with pytest.raises(ValueError, match="EGA_SIM_RANK_PATH: expected one of auto, kernel"):
        path.current_mode()
    with pytest.raises(ValueError, match="rank path: expected one of"):
        path.check_mode("numba")


def test_evaluate_gives_the_same_figures_on_both_paths() -> None:
    """A whole run (draws, chunks of 4,096, metrics, exact regret of every bidder) is the
    same on the kernel and on torch, up to the wall time."""
    config = position_auction(6, (1.0, 0.6, 0.3), reserve=0.1, ecpm_floor=0.05)
    results = []
    for mode in ("kernel", "torch"):
        with path.rank_path(mode):
            result = evaluate("cascade/gsp", config, requests=9_000, misreport="exact")
        results.append({k: v for k, v in dataclasses.asdict(result).items() if k != "seconds"})
    assert repr(results[0]) == repr(results[1])  # every float to its last bit (NaN too)
    assert results[0]["psi"] > 0.0  # gsp is not truthful: the search finds regret


def test_kernel_on_an_empty_batch() -> None:
    world = make_world(position_auction(3, (1.0, 0.5)), "cpu")
    empty = torch.zeros((0, 3), dtype=torch.float64)
    requests = AuctionRequests(empty, empty + 1.0)
    mechanism = make_mechanism("cascade/vcg", world)
    with path.rank_path("kernel"):
        outcome = mechanism.run(requests, empty)
        search = misreport_utility(MisreportSpec("exact"), mechanism, world, requests, empty)
    assert outcome.slot_bidder.shape == (0, 2) and outcome.price_per_click.shape == (0, 2)
    assert search.utility.shape == (0, 3, 1)


def test_without_numba_everything_runs_on_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba missing: auto falls back to torch (same numbers), `kernel` is a clear error."""
    world = make_world(position_auction(4, (1.0, 0.5)), "cpu")
    gsp = make_mechanism("cascade/gsp", world)
    requests = world.sample_requests(3_000, torch.Generator().manual_seed(1))
    bids = requests.value_per_click
    with path.rank_path("kernel"):
        expected = gsp.run(requests, bids).price_per_click
    monkeypatch.delenv(path.ENVIRONMENT_VARIABLE, raising=False)  # auto
    monkeypatch.setattr(path, "_kernels", lambda: None)
    monkeypatch.setattr(path, "_eligible_requests", path.AUTO_AFTER_REQUESTS)
    assert not path.kernel_available() and "numba not installed" in path.describe()
    assert not path.uses_kernel(gsp, bids)
    assert torch.equal(gsp.run(requests, bids).price_per_click, expected)
    message = "EGA_SIM_RANK_PATH=kernel: numba is not installed"
    with pytest.raises(RuntimeError, match=message), path.rank_path("kernel"):
        gsp.run(requests, bids)


def test_regret_search_refuses_a_world_with_other_slots() -> None:
    """The search compiles K from the world's CTRs: an allocator with another K is an error
    that names both, not a silent read past the slots."""
    two_slots = make_world(position_auction(4, (1.0, 0.5)), "cpu")
    three_slots = make_world(position_auction(4, (1.0, 0.5, 0.25)), "cpu")
    mechanism = make_mechanism("cascade/gsp", three_slots)
    requests = two_slots.sample_requests(100, torch.Generator().manual_seed(2))
    bids = requests.value_per_click
    with pytest.raises(ValueError, match="the world has 2 slots, the allocator 3"):
        _search_on("kernel", mechanism, two_slots, requests, bids, None)


def test_the_load_check_passes_here_and_catches_a_changed_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mechanisms/rank_kernel_check.py: the kernels agree with torch here (one slot; three
    slots with a reserve and an eCPM floor); a price one float step off fails the check."""
    from ega_sim.mechanisms import rank_kernel_check as check

    one_slot = make_world(position_auction(4, (1.0,)), "cpu")
    assert check.kernels_agree_with_torch(make_mechanism("cascade/gsp", one_slot))
    config = position_auction(6, (1.0, 0.6, 0.3), reserve=0.25, ecpm_floor=0.125)
    vcg = make_mechanism("cascade/vcg", make_world(config, "cpu"))
    assert check.kernels_agree_with_torch(vcg)
    kernel_run = path.kernel_run

    def one_step_off(mechanism, requests, bids):
        allocation, price = kernel_run(mechanism, requests, bids)
        return allocation, torch.nextafter(price, price.new_tensor(torch.inf))

    monkeypatch.setattr(path, "kernel_run", one_step_off)
    assert not check.kernels_agree_with_torch(vcg)


def test_a_kernel_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed check: auto runs torch (the run and the regret search) with a warning that says
    why, once; `kernel` is an error."""
    from ega_sim.mechanisms import rank_kernel_check as check

    world = make_world(position_auction(5, (1.0, 0.5)), "cpu")
    gsp = make_mechanism("cascade/gsp", world)
    requests = world.sample_requests(path.KERNEL_MIN_REQUESTS, torch.Generator().manual_seed(3))
    bids = requests.value_per_click
    with path.rank_path("torch"):
        expected = gsp.run(requests, bids)
    monkeypatch.delenv(path.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(path, "_eligible_requests", path.AUTO_AFTER_REQUESTS)
    monkeypatch.setattr(check, "_checked", {})
    monkeypatch.setattr(check, "kernels_agree_with_torch", lambda mechanism: False)
    check._warn_once.cache_clear()
    message = "disagrees with the torch reference on this machine for cascade/gsp with K = 2"
    with pytest.warns(RuntimeWarning, match=message + r".*running torch"):
        outcome = gsp.run(requests, bids)
    assert torch.equal(outcome.price_per_click, expected.price_per_click)
    search = misreport_utility(MisreportSpec("exact"), gsp, world, requests, bids, outcome=outcome)
    assert search.utility.shape == (*bids.shape, 3)  # torch's K + 1 candidates, not the kernel's 1
    refused = "EGA_SIM_RANK_PATH=kernel: the compiled rank kernel"
    with pytest.raises(RuntimeError, match=refused), path.rank_path("kernel"):
        gsp.run(requests, bids)


def _random_outcome(batch: int, n_bidders: int, n_slots: int, seed: int):
    """Requests, bids above and below the values (IR violations), and an outcome with empty
    slots, prices on a small grid (ties, zeros), random expected clicks and model CTRs."""
    from ega_sim.mechanisms.base import Allocation, Outcome

    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 5, (batch, n_bidders), generator=generator).double() / 4
    bids = values + torch.randint(-1, 2, (batch, n_bidders), generator=generator).double() / 8
    shown = torch.rand((batch, n_bidders), generator=generator).argsort(1)[:, :n_slots]
    empty = torch.rand((batch, n_slots), generator=generator) < 0.3
    slot_bidder = torch.where(empty, -1, shown)  # [B, K]
    price = torch.randint(0, 6, (batch, n_slots), generator=generator).double() / 5
    clicks = torch.rand((batch, n_slots), generator=generator, dtype=torch.float64)
    outcome = Outcome(Allocation(slot_bidder, clicks), torch.where(empty, 0.0, price))
    requests = AuctionRequests(values, torch.ones_like(values))
    return requests, bids, outcome, torch.where(empty, 0.0, clicks)


@pytest.mark.parametrize("n_slots", [1, 3, 4, 5, 8])
def test_outcome_kernel_equals_torch(n_slots: int) -> None:
    """measure_outcome on the kernel gives torch's revenue, welfare, clicks, ads, utilities and
    IR violations bit for bit (more than 4 slots: torch's own order of summation), truthful
    (bids are the values) or not."""
    from ega_sim.metrics.outcomes import measure_outcome

    requests, bids, outcome, clicks = _random_outcome(3_000, n_slots + 2, n_slots, n_slots)
    for bidding in (requests.value_per_click, bids):
        results = []
        for mode in ("kernel", "torch"):
            with path.rank_path(mode):
                results.append(measure_outcome(requests, bidding, outcome, clicks))
        kernel, reference = (dataclasses.asdict(result) for result in results)
        for name, expected in reference.items():
            assert torch.equal(kernel[name], expected), name
    assert reference["ir_violations"].sum() > 0 and (outcome.slot_bidder < 0).any()


def test_which_path_measures(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto measures on the kernel once rank auctions run there (and numba is loaded), and
    only float64 CPU tensors; `kernel` always, `torch` never."""
    values = torch.rand(path.KERNEL_MIN_REQUESTS, 4, dtype=torch.float64)
    slots = values[:, :2]
    monkeypatch.delenv(path.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(path, "_eligible_requests", 0)
    assert not path.measures_on_kernel(values, values, slots, slots)
    monkeypatch.setattr(path, "_eligible_requests", path.AUTO_AFTER_REQUESTS)
    assert path.measures_on_kernel(values, values, slots, slots)
    assert not path.measures_on_kernel(values[:-1], values[:-1], slots[:-1], slots[:-1])
    assert not path.measures_on_kernel(values, values, slots.float(), slots)
    with path.rank_path("kernel"):
        assert path.measures_on_kernel(values[:1], values[:1], slots[:1], slots[:1])
    with path.rank_path("torch"):
        assert not path.measures_on_kernel(values, values, slots, slots)


def test_an_outcome_kernel_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The outcome kernel's check catches a revenue one float step off: auto measures on torch
    with a warning, `kernel` is an error."""
    from ega_sim.mechanisms import rank_kernel_check as check
    from ega_sim.metrics import outcomes

    requests, bids, outcome, clicks = _random_outcome(path.KERNEL_MIN_REQUESTS, 6, 3, 4)
    with path.rank_path("torch"):
        expected = outcomes.measure_outcome(requests, bids, outcome, clicks)
    on_kernel = outcomes._measure_on_kernel

    def one_step_off(*args):
        measured = on_kernel(*args)
        revenue = torch.nextafter(measured.revenue, measured.revenue.new_tensor(torch.inf))
        return dataclasses.replace(measured, revenue=revenue)

    monkeypatch.setattr(outcomes, "_measure_on_kernel", one_step_off)
    monkeypatch.delenv(path.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(path, "_eligible_requests", path.AUTO_AFTER_REQUESTS)
    outcomes._kernel_trusted.cache_clear()
    check._warn_once.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="outcome kernel .* disagrees.*running torch"):
            measured = outcomes.measure_outcome(requests, bids, outcome, clicks)
        assert torch.equal(measured.revenue, expected.revenue)
        outcomes._kernel_trusted.cache_clear()
        refused = "EGA_SIM_RANK_PATH=kernel: the compiled outcome kernel"
        with pytest.raises(RuntimeError, match=refused), path.rank_path("kernel"):
            outcomes.measure_outcome(requests, bids, outcome, clicks)
    finally:
        outcomes._kernel_trusted.cache_clear()  # the next test checks the real kernel again
