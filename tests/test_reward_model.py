"""The permutation-aware reward model: on held-out logged lists it predicts POI clicks better
than the cascade's pointwise model, it tells a better order of the same items from a worse one
(judged by the ground-truth click model), it reads the whole list, and it is reproducible."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ega_sim.config import load_scenario
from ega_sim.generative.items import fit_item_tokenizers
from ega_sim.generative.reward_model import RewardModelConfig, list_inputs, logged_inputs
from ega_sim.generative.reward_model_train import train_reward_model
from ega_sim.logs.simulate import simulate_logs
from ega_sim.logs.store import read_logs
from ega_sim.ranking.train import auc, exposure_examples, train_pctr
from ega_sim.seeding import make_generator
from ega_sim.world.click_model import FeedClickModel, FeedList
from ega_sim.world.feed_market import generate_market

TRAIN_REQUESTS = 10_000
HELD_OUT_REQUESTS = 2_000


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """(training logs, held-out logs) of feed_small: two independent runs of the logging
    policy (seeds 0 and 1) on the same market; no model ever trains on the held-out one."""
    scenario = load_scenario("feed_small")
    train_dir = tmp_path_factory.mktemp("rm_train_logs")
    held_out_dir = tmp_path_factory.mktemp("rm_held_out_logs")
    simulate_logs(scenario, TRAIN_REQUESTS, train_dir, seed=0)
    simulate_logs(scenario, HELD_OUT_REQUESTS, held_out_dir, seed=1)
    return read_logs(train_dir, scenario), read_logs(held_out_dir, scenario)


@pytest.fixture(scope="module")
def tokenizers(logs):
    return fit_item_tokenizers(logs[0].platform, seed=0)


@pytest.fixture(scope="module")
def trained(logs, tokenizers):
    return train_reward_model(logs[0], tokenizers, RewardModelConfig(), seed=0)


def _slot_columns(logs, rows):
    x = logs.exposures
    return x["user"][rows], x["poi"][rows], x["advertiser"][rows], x["creative"][rows]


def test_rm_beats_the_pointwise_pctr_model_on_held_out_lists(logs, tokenizers, trained):
    train_logs, held_out = logs
    model, report = trained
    pal, _ = train_pctr(train_logs, seed=0)

    # Both models score the same held-out slots: every logged slot of the held-out requests.
    rows = torch.arange(held_out.n_requests)
    inputs, _ = logged_inputs(held_out, tokenizers)
    p_poi, p_img, _ = model.predict(inputs)  # [R, K]
    clicked = held_out.exposures["poi_click"][rows].float()  # [R, K]
    rm_auc = auc(p_poi.flatten(), clicked.flatten())
    item, creative, position, pal_clicked = exposure_examples(held_out, rows)
    with torch.no_grad():
        pal_log_click, _ = pal.log_click_probability(item, creative, position)
    assert torch.equal(pal_clicked, clicked.flatten())  # same slots, same order
    pal_auc = auc(pal_log_click, pal_clicked)
    assert pal_auc > 0.65  # a fair opponent: the cascade's model does learn
    assert rm_auc > pal_auc, (rm_auc, pal_auc)

    # The other heads learn too: better than chance on held-out image clicks, and the fit beats
    # the constant predictor on the validation split.
    img_auc = auc(p_img.flatten(), held_out.exposures["img_click"].float().flatten())
    assert img_auc > 0.65
    assert report["validation_log_loss"] < report["constant_log_loss"]
    assert report["validation_cvr_auc"] > 0.5


def _true_poi_clicks(market, user, poi, advertiser, creative) -> torch.Tensor:
    """Exact expected POI clicks per list [B] under the ground-truth user model."""
    is_ad = advertiser >= 0
    appeal = torch.where(
        is_ad,
        market.creative_appeal[advertiser.clamp(min=0), creative.clamp(min=0)],
        market.poi_thumbnail_appeal[poi],
    )
    return FeedClickModel(market).expected(FeedList(user, poi, is_ad, appeal)).poi_clicks.sum(1)


def test_rm_tells_the_better_order_of_the_same_items(logs, tokenizers, trained):
    """Pairs (logged list, a random permutation of its items): the truth says which order
    gets more expected POI clicks, the RM's predicted total POI clicks votes too. Under the
    null "the RM is no better than a coin", agreement ~ Binomial(n, 1/2)/n with standard error
    sqrt(0.25 / n); we demand agreement above 1/2 + 3 standard errors (a one-sided false pass
    has odds ~1e-3 under that null; the seeds are fixed, so the test is deterministic)."""
    _, held_out = logs
    model, _ = trained
    market = generate_market(load_scenario("feed_small"))  # the truth behind the logs
    n = 500
    rows = torch.arange(n)
    logged = _slot_columns(held_out, rows)
    user, columns = logged[0], logged[1:]
    n_slots = columns[0].shape[1]
    generator = make_generator(0, "test", "rm_order")
    permutation = torch.argsort(torch.rand(n, n_slots, generator=generator), dim=1)  # [n, K]
    shuffled = tuple(c.gather(1, permutation) for c in columns)

    truth_logged = _true_poi_clicks(market, user, *columns)
    truth_shuffled = _true_poi_clicks(market, user, *shuffled)
    rm_logged = model.predict(list_inputs(held_out.platform, tokenizers, user, *columns))[0]
    rm_shuffled = model.predict(list_inputs(held_out.platform, tokenizers, user, *shuffled))[0]
    agree = (truth_logged > truth_shuffled) == (rm_logged.sum(1) > rm_shuffled.sum(1))
    rate = float(agree.double().mean())
    standard_error = math.sqrt(0.25 / n)
    assert rate > 0.5 + 3 * standard_error, (rate, standard_error)


def test_every_item_sees_the_whole_list(logs, tokenizers, trained):
    """No causal mask: changing the LAST item of a list changes the prediction of the first,
    and the outputs are probabilities of the right shape; organic items get "no creative"."""
    _, held_out = logs
    model, _ = trained
    user, poi, advertiser, creative = _slot_columns(held_out, torch.arange(64))
    inputs = list_inputs(held_out.platform, tokenizers, user, poi, advertiser, creative)
    organic = advertiser < 0
    assert torch.equal(inputs.is_ad, ~organic)
    assert bool((inputs.creative_ids[organic] == tokenizers.no_creative).all())
    p_poi, p_img, p_cvr = model.predict(inputs)
    for p in (p_poi, p_img, p_cvr):
        assert p.shape == poi.shape and bool(((p > 0) & (p < 1)).all())

    other_last = poi.clone()
    other_last[:, -1] = held_out.exposures["organic_poi"][:64, -1]  # a different organic item
    changed = other_last[:, -1] != poi[:, -1]
    other_advertiser = advertiser.clone()
    other_advertiser[:, -1] = -1
    other_creative = creative.clone()
    other_creative[:, -1] = -1
    p_other, _, _ = model.predict(
        list_inputs(
            held_out.platform, tokenizers, user, other_last, other_advertiser, other_creative
        )
    )
    assert bool(changed.any())
    assert bool((p_other[changed, 0] != p_poi[changed, 0]).all())


def test_same_seed_same_predictions(logs):
    train_logs, held_out = logs
    small = dataclasses.replace(
        train_logs, exposures={k: v[:1_500] for k, v in train_logs.exposures.items()}
    )
    config = RewardModelConfig(epochs=1, d_model=32)
    predictions = []
    for _ in range(2):
        tokenizers = fit_item_tokenizers(small.platform, seed=5, steps=50)
        model, _ = train_reward_model(small, tokenizers, config, seed=5)
        inputs, _ = logged_inputs(held_out, tokenizers, torch.arange(200))
        predictions.append(torch.stack(model.predict(inputs)))
    assert torch.equal(predictions[0], predictions[1])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("d_model", 0),
        ("heads", 3),  # 64 is not a multiple of 3
        ("layers", 1.5),
        ("dropout", 1.0),
        ("epochs", 0),
        ("batch_size", -1),
        ("learning_rate", 0.0),
        ("weight_decay", -1e-3),
        ("validation_share", 1.0),
    ],
)
def test_bad_config_is_a_clear_error(field, value):
    expected = "d_model" if field == "heads" else field
    with pytest.raises(ValueError, match=f"RewardModelConfig.{expected}"):
        RewardModelConfig(**{field: value})
