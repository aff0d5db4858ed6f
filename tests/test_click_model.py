"""The ground-truth click model of the feed market: position, externalities, creatives,
exact expectations against sampling, batching."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ega_sim.config import load_scenario
from ega_sim.world.click_model import FeedClickModel, FeedList
from ega_sim.world.feed_market import generate_market


@pytest.fixture(scope="module")
def market():
    return generate_market(load_scenario("feed_small"))


def _list(market, pois, appeal=None, is_ad=None, user=0):
    pois = torch.tensor([pois])
    return FeedList(
        user=torch.tensor([user]),
        poi=pois,
        is_ad=torch.zeros_like(pois, dtype=torch.bool) if is_ad is None else torch.tensor([is_ad]),
        appeal=torch.zeros(pois.shape, dtype=torch.float64)
        if appeal is None
        else torch.tensor([appeal], dtype=torch.float64),
    )


def _dissimilar_pois(market, count: int) -> list[int]:
    """POIs whose latent cosines are all below the similarity threshold (no externality)."""
    threshold = market.config.click_model.similarity_threshold
    chosen: list[int] = []
    for poi in range(market.n_pois):
        if all(float(market.poi_latent[poi] @ market.poi_latent[c]) < threshold for c in chosen):
            chosen.append(poi)
        if len(chosen) == count:
            return chosen
    raise AssertionError("not enough dissimilar POIs")


def test_expected_clicks_fall_when_an_item_moves_down(market):
    model = FeedClickModel(market)
    pois = _dissimilar_pois(market, 5)
    for position in range(1, 5):
        moved = [*pois[1 : position + 1], pois[0], *pois[position + 1 :]]
        top = model.expected(_list(market, pois)).poi_clicks[0, 0]
        lower = model.expected(_list(market, moved)).poi_clicks[0, position]
        assert lower < top


def test_near_duplicate_above_lowers_appeal(market):
    model = FeedClickModel(market)
    target, unrelated = _dissimilar_pois(market, 2)
    cosine = market.poi_latent @ market.poi_latent[target]
    cosine[target] = -2.0
    twin = int(cosine.argmax())
    assert float(cosine[twin]) > market.config.click_model.similarity_threshold
    p_after_twin, _ = model.click_probabilities(_list(market, [twin, target]))
    p_after_other, _ = model.click_probabilities(_list(market, [unrelated, target]))
    assert p_after_twin[0, 1] < p_after_other[0, 1]


def test_ads_above_lower_appeal_and_creatives_change_clicks(market):
    model = FeedClickModel(market)
    a, b = _dissimilar_pois(market, 2)
    p_organic_above, _ = model.click_probabilities(_list(market, [a, b], is_ad=[False, False]))
    p_ad_above, _ = model.click_probabilities(_list(market, [a, b], is_ad=[True, False]))
    assert p_ad_above[0, 1] < p_organic_above[0, 1]
    dull_poi, dull_img = model.click_probabilities(_list(market, [a], appeal=[-1.0]))
    bright_poi, bright_img = model.click_probabilities(_list(market, [a], appeal=[1.0]))
    assert bright_poi[0, 0] > dull_poi[0, 0] and bright_img[0, 0] > dull_img[0, 0]
    # image clicks are driven mostly by the creative
    assert (bright_img - dull_img)[0, 0] > (bright_poi - dull_poi)[0, 0]


def test_examination_is_a_cascade_with_stop_after_click(market):
    # With stop_after_click = 0 examination is decay^(k-1) exactly; with it, lower.
    config = market.config
    no_stop = dataclasses.replace(
        config, click_model=dataclasses.replace(config.click_model, stop_after_click=0.0)
    )
    pois = _dissimilar_pois(market, 4)
    flat = FeedClickModel(dataclasses.replace(market, config=no_stop)).expected(_list(market, pois))
    decay = config.click_model.position_decay
    assert torch.allclose(
        flat.examined[0], torch.tensor([decay**k for k in range(4)], dtype=torch.float64)
    )
    stopping = FeedClickModel(market).expected(_list(market, pois))
    assert bool((stopping.examined[0, 1:] < flat.examined[0, 1:]).all())


def test_sampled_clicks_average_to_expected(market):
    model = FeedClickModel(market)
    n = 200_000
    pois = torch.tensor(_dissimilar_pois(market, 6)).expand(n, -1)
    feed = FeedList(
        torch.full((n,), 3),
        pois,
        torch.zeros_like(pois, dtype=torch.bool),
        torch.full(pois.shape, 0.5, dtype=torch.float64),
    )
    expected = model.expected(FeedList(feed.user[:1], pois[:1], feed.is_ad[:1], feed.appeal[:1]))
    sampled = model.sample(feed, torch.Generator().manual_seed(7))
    for name in ("examined", "poi_clicks", "img_clicks", "orders", "gmv"):
        draws = getattr(sampled, name)  # [n, K]
        mean = draws.mean(0)
        se = draws.std(0) / math.sqrt(n)
        gap = (mean - getattr(expected, name)[0]).abs()
        assert bool((gap <= 4.5 * se + 1e-12).all()), (name, gap / se)


def test_a_batch_equals_one_request_at_a_time(market):
    model = FeedClickModel(market)
    generator = torch.Generator().manual_seed(1)
    batch = 16
    feed = FeedList(
        user=torch.randint(market.n_users, (batch,), generator=generator),
        poi=torch.randint(market.n_pois, (batch, 10), generator=generator),
        is_ad=torch.rand(batch, 10, generator=generator) < 0.3,
        appeal=torch.randn(batch, 10, generator=generator, dtype=torch.float64),
    )
    together = model.expected(feed)
    for b in range(batch):
        alone = model.expected(
            FeedList(
                feed.user[b : b + 1],
                feed.poi[b : b + 1],
                feed.is_ad[b : b + 1],
                feed.appeal[b : b + 1],
            )
        )
        for name in ("examined", "poi_clicks", "img_clicks", "orders", "gmv"):
            assert torch.allclose(getattr(together, name)[b], getattr(alone, name)[0], rtol=1e-12)


def test_expected_clicks_are_differentiable_in_appeal(market):
    model = FeedClickModel(market)
    appeal = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    feed = FeedList(
        torch.tensor([0]),
        torch.tensor([_dissimilar_pois(market, 3)]),
        torch.zeros(1, 3, dtype=torch.bool),
        appeal,
    )
    model.expected(feed).poi_clicks.sum().backward()
    assert appeal.grad is not None and bool(appeal.grad[0, 0] > 0)
