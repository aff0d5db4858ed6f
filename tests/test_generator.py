"""The EGA-V2 generator so far: pre-training learns, the KV cache matches full decoding,
token-level bidding is a proper (and bid-monotone) distribution, and constrained beam search
returns valid lists."""

from __future__ import annotations

import math

import pytest
import torch

from ega_sim.config import load_scenario
from ega_sim.generative.beam_search import beam_search, candidate_set
from ega_sim.generative.config import EGAConfig, generator_config
from ega_sim.generative.items import build_item_tables
from ega_sim.generative.pretrain import PretrainConfig, pretrain_generator
from ega_sim.generative.token_bidding import BiddingConfig, code_tree, item_log_probs
from ega_sim.logs.store import read_logs
from ega_sim.seeding import make_generator
from ega_sim.world.market_world import FeedMarketWorld


@pytest.fixture(scope="module")
def trained(feed_small_logs):
    scenario = load_scenario("feed_small")
    logs = read_logs(feed_small_logs, scenario)
    tables, _ = build_item_tables(logs.platform, seed=0, steps=300)
    small = EGAConfig(d_model=32, heads=2, encoder_layers=1, decoder_layers=1)
    config = generator_config(small, tables, scenario)
    model, report = pretrain_generator(logs, tables, config, PretrainConfig(epochs=1), seed=0)
    return scenario, logs, tables, model, report


def _candidates(scenario, logs, tables, batch=48, seed=0, bid_scale=None):
    world = FeedMarketWorld(scenario)
    requests = world.sample_requests(batch, make_generator(seed, "generator-test"))
    bids = requests.value_per_click.float()
    if bid_scale is not None:
        bids = bids * bid_scale
    return requests, candidate_set(tables, logs.platform, requests, bids)


def test_pretraining_lowers_the_next_item_loss(trained):
    *_, report = trained
    assert report["final_poi_loss"] < report["first_poi_loss"]


def test_cached_decoding_equals_full_decoding(trained):
    _, logs, tables, model, _ = trained
    x = logs.exposures
    batch = tables.list_batch(x["user"][:8], x["poi"][:8], x["advertiser"][:8], x["creative"][:8])
    with torch.no_grad():
        memory = model.encode(batch["history_codes"], batch["history_features"], batch["user"])
        items = model.item_embedding(batch["poi_codes"], batch["features"], batch["creative_codes"])
        full = model.decode(items, memory)  # [8, K + 1, d]
        state, cache = model.start_cache(memory)
        stepped = [state]
        for k in range(items.shape[1]):
            state, cache = model.step(items[:, k], cache)
            stepped.append(state)
    assert torch.allclose(torch.stack(stepped, 1), full, atol=1e-5)


def _brute_force_log_z(scores, codes, bids, allowed, config):
    """Hierarchical softmax by its definition, one item and level at a time (plain Python)."""
    items = [i for i in range(len(allowed)) if allowed[i]]
    out = {}
    for i in items:
        total = 0.0
        for level in range(codes.shape[1]):
            siblings = [j for j in items if codes[j, :level].tolist() == codes[i, :level].tolist()]
            groups: dict[int, list[int]] = {}
            for j in siblings:
                groups.setdefault(int(codes[j, level]), []).append(j)

            def value(code, level=level, groups=groups):
                members = groups[code]
                weight = (
                    0.0
                    if config is None
                    else math.log(
                        (max(float(bids[k]) for k in members) / config.bid_unit) ** config.alpha
                        + config.beta
                    )
                )
                return float(scores[members[0], level]) + weight

            normalizer = math.log(sum(math.exp(value(c)) for c in groups))
            total += value(int(codes[i, level])) - normalizer
        out[i] = total
    return out


@pytest.mark.parametrize(
    "config",
    [None, BiddingConfig(), BiddingConfig(alpha=0.5, beta=0.1), BiddingConfig(bid_unit=0.01)],
)
def test_token_level_bidding_is_the_hierarchical_softmax(config):
    generator = torch.Generator().manual_seed(1)
    n, levels = 14, 3
    head = torch.randint(0, 3, (n, levels - 1), generator=generator)
    rank = torch.tensor([sum(torch.equal(head[j], head[i]) for j in range(i)) for i in range(n)])
    codes = torch.cat([head, rank.unsqueeze(1)], 1)  # unique IDs, as semantic IDs are
    # A score per (prefix, code): items in one group share it, as the generator's heads do.
    table = {}
    scores = torch.zeros(n, levels)
    for i in range(n):
        for level in range(levels):
            key = tuple(codes[i, : level + 1].tolist())
            table.setdefault(key, float(torch.randn(1, generator=generator)))
            scores[i, level] = table[key]
    bids = torch.rand(n, generator=generator) * 3
    allowed = torch.rand(n, generator=generator) < 0.75
    got = item_log_probs(scores[None], code_tree(codes[None]), bids[None], allowed[None], config)[0]
    expected = _brute_force_log_z(scores, codes, bids, allowed, config)
    for i, value in expected.items():
        assert got[i].item() == pytest.approx(value, abs=1e-5)
    assert torch.logsumexp(got, 0).item() == pytest.approx(0.0, abs=1e-5)
    assert bool(torch.isinf(got[~allowed]).all())
    if config is not None:  # raising one bid never lowers that item's probability
        for i in expected:
            raised = bids.clone()
            raised[i] *= 2
            again = item_log_probs(
                scores[None], code_tree(codes[None]), raised[None], allowed[None], config
            )
            assert again[0, i] >= got[i] - 1e-6


def test_generated_lists_are_valid(trained):
    scenario, logs, tables, model, _ = trained
    requests, candidates = _candidates(scenario, logs, tables)
    out = beam_search(
        model,
        tables,
        candidates,
        n_items=scenario.n_slots,
        beams=4,
        max_ads=3,
        bidding=BiddingConfig(),
    )
    n_ads = requests.n_bidders
    items = out.items  # [B, S, K]
    assert items.shape == (48, 4, scenario.n_slots)
    assert bool((out.log_prob[:, 0] > -torch.inf).all())
    assert bool((items.sort(-1).values.diff(dim=-1) > 0).all())  # no item twice
    assert bool(((items >= 0) & (items < n_ads + requests.n_organic)).all())
    organic = torch.where(items >= n_ads, items - n_ads, -1)
    running = torch.cummax(organic, dim=-1).values
    assert not bool(((organic >= 0) & (organic < running)).any())  # organic order kept
    assert bool(((items < n_ads).sum(-1) <= 3).all())
    is_ad = items < n_ads
    advertiser = (
        requests.ad_advertiser.unsqueeze(1).expand(-1, 4, -1).gather(2, items.clamp(max=n_ads - 1))
    )
    count = logs.platform.creative_count[advertiser]
    assert bool(((out.creative >= 0) & (out.creative < count))[is_ad].all())
    assert bool((out.creative[~is_ad] == -1).all())
    again = beam_search(
        model,
        tables,
        candidates,
        n_items=scenario.n_slots,
        beams=4,
        max_ads=3,
        bidding=BiddingConfig(),
    )
    assert torch.equal(again.items, out.items)


def test_bids_matter_only_through_alpha(trained):
    scenario, logs, tables, model, _ = trained
    _, low = _candidates(scenario, logs, tables, seed=3)
    _, high = _candidates(scenario, logs, tables, seed=3, bid_scale=5.0)
    flat = BiddingConfig(alpha=0.0, beta=2.0)
    kwargs = {"n_items": scenario.n_slots, "beams": 4, "max_ads": 3}
    assert torch.equal(
        beam_search(model, tables, low, bidding=flat, **kwargs).items,
        beam_search(model, tables, high, bidding=flat, **kwargs).items,
    )


def test_raising_an_ads_bid_does_not_lower_its_allocation_in_expectation(trained):
    scenario, logs, tables, model, _ = trained
    requests, base = _candidates(scenario, logs, tables, batch=256, seed=5)
    scale = torch.ones(requests.n_bidders)
    scale[0] = 3.0
    _, raised = _candidates(scenario, logs, tables, batch=256, seed=5, bid_scale=scale)
    kwargs = {"n_items": scenario.n_slots, "beams": 4, "max_ads": 3, "bidding": BiddingConfig()}
    shown_before = (beam_search(model, tables, base, **kwargs).items[:, 0] == 0).any(-1).float()
    shown_after = (beam_search(model, tables, raised, **kwargs).items[:, 0] == 0).any(-1).float()
    difference = shown_after - shown_before  # paired, per request
    se = float(difference.std()) / math.sqrt(len(difference))
    assert float(difference.mean()) >= -3 * se
    assert float(difference.mean()) > 0  # and here it strictly helps
