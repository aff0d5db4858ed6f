"""The GPU path (`pytest -m gpu`, or scripts/gpu_check.sh with the GPU benchmarks): the same
mechanisms on CUDA as on the CPU. Skipped where torch sees no CUDA device.

Lists are compared on a fixed checkpoint: float32 sums run in another order on a GPU, so a
near-tie between two beams may resolve the other way; the tests allow a few such requests and
ask the rest to be identical, and the metrics to agree within Monte Carlo error.
"""

from __future__ import annotations

import math

import pytest
import torch

import ega_sim
from ega_sim.seeding import make_generator
from tests.conftest import within_standard_errors

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

NEAR_TIES = 0.05  # at most this share of requests may resolve a near-tie differently


@pytest.fixture(scope="module")
def worlds():
    return ega_sim.make_world("feed_small"), ega_sim.make_world("feed_small", "cuda")


@pytest.mark.parametrize("name", ["ega/gsp", "gr/gsp", "ega/first"])
def test_generated_lists_on_the_gpu_are_the_cpus(worlds, feed_small_ega, name):
    cpu, gpu = worlds
    on_cpu = ega_sim.make_mechanism(name, cpu, checkpoint=feed_small_ega)
    on_gpu = ega_sim.make_mechanism(name, gpu, checkpoint=feed_small_ega)
    requests = cpu.sample_requests(256, make_generator(0, "gpu"))
    a = on_cpu.run(requests, requests.value_per_click)
    b = on_gpu.run(requests.to("cuda"), requests.value_per_click.cuda())
    items_b = b.allocation.slot_item.cpu()
    same = (a.allocation.slot_item == items_b).all(1)
    assert float((~same).float().mean()) <= NEAR_TIES
    price_b = b.price_per_click.cpu()
    assert torch.allclose(a.price_per_click[same], price_b[same], rtol=1e-4, atol=1e-6)


def test_regret_on_the_gpu_agrees_with_the_cpu(worlds, feed_small_ega):
    cpu, gpu = worlds
    results = [
        ega_sim.evaluate(
            ega_sim.make_mechanism("ega/gsp", world, checkpoint=feed_small_ega),
            world,
            requests=400,
            regret_requests=64,
            seed=3,
            misreport="grid",
        )
        for world in (cpu, gpu)
    ]
    a, b = results
    assert b.device.startswith("cuda") and a.regret_pairs > 0
    se = math.hypot(a.revenue_per_request_se, b.revenue_per_request_se)
    assert within_standard_errors(b.revenue_per_request, a.revenue_per_request, se)
    se = math.hypot(a.regret_mean_se, b.regret_mean_se)
    assert within_standard_errors(b.regret_mean, a.regret_mean, se)


def test_rank_and_cascade_mechanisms_match_on_the_gpu():
    for scenario, name in (("textbook", "cascade/gsp"), ("textbook", "myerson/threshold")):
        a = ega_sim.evaluate(name, scenario, requests=20_000, seed=1)
        b = ega_sim.evaluate(name, scenario, requests=20_000, seed=1, device="cuda")
        assert b.revenue_per_request == pytest.approx(a.revenue_per_request, rel=1e-9)
        assert b.regret_mean == pytest.approx(a.regret_mean, rel=1e-6, abs=1e-12)


def test_the_pipeline_and_a_payment_network_train_on_the_gpu(tmp_path, feed_small_logs):
    from ega_sim.generative.train import train_ega
    from ega_sim.logs.store import read_logs
    from ega_sim.payment.config import PaynetTrainConfig
    from ega_sim.payment.fit import train_paynet
    from tests.conftest import TINY_EGA

    world = ega_sim.make_world("feed_small", "cuda")
    logs = read_logs(feed_small_logs, world.config)
    reports = train_ega(world.config, logs, tmp_path, TINY_EGA, seed=0, device="cuda")
    assert reports["reward_model"]["validation_poi_auc"] > 0.5
    config = PaynetTrainConfig(
        steps=20, batch_size=8, validate_every=10, cached_requests=4, cached_validation_requests=2
    )
    report = train_paynet(world, "ega", tmp_path, config, seed=0)
    assert math.isfinite(report["validation"]["revenue_per_request"])
    mechanism = ega_sim.make_mechanism("ega/paynet", world, checkpoint=tmp_path)
    result = ega_sim.evaluate(mechanism, world, requests=32, regret_requests=8, misreport="grid")
    assert result.ir_violation_rate == 0.0 and math.isfinite(result.rpm)
