"""The EGA-V2 pipeline end to end at a tiny size: trains stage by stage, resumes, loads as the
`ega` and `gr` mechanisms, and evaluates."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import ega_sim
from ega_sim.checkpoints import GENERATIVE_STAGES as STAGES
from ega_sim.config import load_scenario
from ega_sim.generative.config import EGAConfig
from ega_sim.generative.train import train_ega
from ega_sim.logs.store import read_logs
from ega_sim.testing import check_mechanism
from tests.conftest import TINY_EGA as TINY


@pytest.fixture(scope="module")
def checkpoint(feed_small_ega, feed_small_logs):
    return feed_small_ega, read_logs(feed_small_logs, load_scenario("feed_small"))


def test_every_stage_was_trained(feed_small_ega):
    record = (feed_small_ega / "checkpoint.json").read_text()
    assert all(f'"{stage}"' in record for stage in STAGES)


def test_training_resumes_from_finished_stages(checkpoint):
    out, logs = checkpoint
    marks = {stage: (out / "stages" / stage / "stage.json").stat().st_mtime_ns for stage in STAGES}
    weights = (out / "stages" / "alignment" / "generator.pt").read_bytes()
    train_ega(load_scenario("feed_small"), logs, out, TINY, seed=0)  # everything is done
    assert marks == {s: (out / "stages" / s / "stage.json").stat().st_mtime_ns for s in STAGES}
    assert (out / "stages" / "alignment" / "generator.pt").read_bytes() == weights


@pytest.mark.parametrize("name", ["ega/gsp", "ega/first", "gr/gsp"])
def test_checkpoint_loads_and_evaluates(checkpoint, name):
    out, _ = checkpoint
    mechanism = ega_sim.make_mechanism(name, "feed_small", checkpoint=out)
    check_mechanism(mechanism, "feed_small", requests=8)
    result = ega_sim.evaluate(mechanism, "feed_small", requests=6, seed=1, misreport="grid")
    for key in ("rpm", "ctr_poi", "ctr_img", "welfare_per_request", "regret_mean"):
        assert math.isfinite(getattr(result, key)), key
    if name.endswith("gsp"):  # first price: truthful bidders earn nothing, psi is undefined
        assert math.isfinite(result.psi) and result.psi >= 0
    assert result.ir_violation_rate == 0.0
    assert result.ads_per_request <= 3


def test_generative_mechanisms_refuse_what_they_cannot_do(checkpoint, tmp_path):
    out, _ = checkpoint
    with pytest.raises(ValueError, match="needs --checkpoint"):
        ega_sim.make_mechanism("ega/gsp", "feed_small")
    with pytest.raises(ValueError, match="ALLOCATOR/PAYMENT"):
        ega_sim.make_mechanism("ega/vcg", "feed_small", checkpoint=out)
    with pytest.raises(ValueError, match=r"checkpoint\.json is missing"):
        ega_sim.make_mechanism("gr/gsp", "feed_small", checkpoint=tmp_path)
    single = dataclasses.replace(TINY, single_stage=True)
    assert single.to_dict()["single_stage"] is True
    assert EGAConfig.from_dict(single.to_dict()) == single


def test_ega_config_files_are_validated(tmp_path):
    good = tmp_path / "ega.toml"
    good.write_text('mtp = false\nsingle_stage = true\n[bidding]\nalpha = 1.0\ncode_bid = "mean"\n')
    from ega_sim.config.reader import read_toml

    config = EGAConfig.from_dict(read_toml(good), str(good))
    assert config.mtp is False and config.bidding.code_bid == "mean" and config.bidding.beta == 2.0
    from ega_sim.config import ConfigError

    for text, key in [
        ("mpt = false\n", "'mpt'"),
        ("[bidding]\ngamma = 1\n", "'bidding.gamma'"),
        ('[bidding]\ncode_bid = "min"\n', "'bidding'"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=key):
            EGAConfig.from_dict(read_toml(bad), str(bad))


def test_paynet_cache_agrees_with_rerunning_the_allocator(checkpoint):
    from ega_sim.mechanisms.bid_response import own_bid_response
    from ega_sim.payment.generated_rule import (
        THRESHOLDS,
        generated_feature_count,
        generated_features,
    )
    from ega_sim.payment.generated_source import GeneratedDeviationSource
    from ega_sim.payment.network import PaymentNetwork
    from ega_sim.seeding import make_generator
    from ega_sim.world.build import make_world

    out, _ = checkpoint
    scenario = load_scenario("feed_small")
    allocator = ega_sim.make_mechanism("ega/first", scenario, checkpoint=out)
    requests = make_world(scenario, torch.device("cpu")).sample_requests(
        2, make_generator(3, "cache")
    )
    network = PaymentNetwork(generated_feature_count(scenario.n_slots, allocator.max_ads))
    source = GeneratedDeviationSource(
        allocator, requests, network, random_draws=1, gamma_max=2.0, generator=make_generator(0)
    )
    n_bidders, n_candidates = source.bids.shape[1:]
    assert n_candidates == 1 + 10 + 1  # truthful, the paper's multipliers, one random draw
    assert torch.equal(source.bids[..., 0], requests.value_per_click)
    shown_somewhere = 0
    for b in range(2):
        for i in range(n_bidders):
            for c in range(n_candidates):
                bids = requests.value_per_click[b : b + 1].clone()
                bids[0, i] = source.bids[b, i, c]
                allocation = allocator.allocate(requests.slice(b, b + 1), bids)
                where = (allocation.slot_bidder[0] == i).nonzero()
                if len(where) == 0:
                    assert float(source.clicks[b, i, c]) == 0.0
                    continue
                shown_somewhere += 1
                slot = int(where[0, 0])
                # The reward model runs in float32: batched and single rows differ in the last bits.
                torch.testing.assert_close(
                    source.clicks[b, i, c], allocation.slot_ctr_model[0, slot], rtol=1e-5, atol=0
                )
                # The own-bid thresholds come from the ad's response on [0, its bid] here, on
                # [0, its largest candidate] in the cache: equal within the responses'
                # resolution (1.2e-4 of the range, divided by the network's value scale).
                bid = bids[0, i].reshape(1)
                response = own_bid_response(
                    allocator, requests.slice(b, b + 1), bids, torch.zeros(1, dtype=torch.long),
                    torch.tensor([i]), bid, bid[:, None],
                )  # fmt: skip
                thresholds = torch.zeros((1, scenario.n_slots, THRESHOLDS), dtype=bids.dtype)
                thresholds[0, slot] = allocator._thresholds(response, bid[:, None])[0, 0]
                features = generated_features(
                    allocation.slot_bidder,
                    allocation.slot_ctr_model,
                    allocation.slot_log_z,
                    bids,
                    allocator.max_ads,
                    float(network.value_scale),
                    thresholds,
                )[0, slot]
                scale = float(source.bids[b, i].max()) / float(network.value_scale)
                torch.testing.assert_close(
                    source.features[b, i, c, :-THRESHOLDS],
                    features[:-THRESHOLDS].float(),
                    rtol=1e-5,
                    atol=1e-6,
                )
                torch.testing.assert_close(
                    source.features[b, i, c, -THRESHOLDS:],
                    features[-THRESHOLDS:].float(),
                    rtol=0,
                    atol=2 * scale / (8 * 2**10) + 1e-6,
                )
    assert shown_somewhere > 0


def test_ega_paynet_trains_and_meets_the_contract(checkpoint):
    from ega_sim.payment.fit import train_paynet
    from ega_sim.payment.train import PaynetTrainConfig

    out, _ = checkpoint
    config = PaynetTrainConfig(
        steps=3, batch_size=4, random_misreports=1, cached_requests=3, cached_validation_requests=2
    )
    report = train_paynet(load_scenario("feed_small"), "ega", out, config, seed=0)
    assert report["validation"]["ir_violations"] == 0
    mechanism = ega_sim.make_mechanism("ega/paynet", "feed_small", checkpoint=out)
    check_mechanism(mechanism, "feed_small", requests=8)
    result = ega_sim.evaluate(mechanism, "feed_small", requests=4, seed=1, misreport="grid")
    assert result.ir_violation_rate == 0.0 and math.isfinite(result.psi)
