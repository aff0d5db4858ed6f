"""Env steps per second of AdAuction-v0: single, SyncVectorEnv and the native vector env."""

from __future__ import annotations

import time

from ega_sim.bench.common import Printer, torch_threads


def run_envs_bench(printer: Printer, *, checkpoint=None, seconds_per_case: float = 3.0) -> None:
    """Env steps per second of AdAuction-v0 (one request per step, random actions): the single
    env, SyncVectorEnv over 64 copies, and the native vector env with 64 and 1,024
    sub-environments, on textbook and feed_small with cascade/gsp (feed_small's cascade from
    `checkpoint`; without one, oracle_cascade/gsp, which skips the pCTR model)."""
    import gymnasium

    from ega_sim.envs import ENV_ID
    from ega_sim.world.build import make_world

    feed_mechanism = "cascade/gsp" if checkpoint else "oracle_cascade/gsp"
    cases = [("textbook", "cascade/gsp", None), ("feed_small", feed_mechanism, checkpoint)]
    for scenario, mechanism, learned in cases:
        world = make_world(scenario)
        settings = {"scenario": world, "mechanism": mechanism, "checkpoint": learned}
        settings["max_steps"] = 1_000_000
        makers = [
            ("single env", 1, lambda s=settings: gymnasium.make(ENV_ID, **s)),
            ("SyncVectorEnv x64", 64, lambda s=settings: gymnasium.make_vec(
                ENV_ID, num_envs=64, vectorization_mode="sync", **s)),
        ] + [
            (f"native vector x{n}", n, lambda s=settings, n=n: gymnasium.make_vec(
                ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **s))
            for n in (64, 1024)
        ]  # fmt: skip
        for label, count, make in makers:
            env = make()
            env.reset(seed=0)
            env.action_space.seed(0)
            actions = [env.action_space.sample() for _ in range(8)]
            env.step(actions[0])  # warm-up
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds_per_case:
                env.step(actions[steps % len(actions)])
                steps += 1
            elapsed = time.perf_counter() - started
            env.close()
            record = {
                "benchmark": "env steps",
                "env": label,
                "scenario": scenario,
                "mechanism": mechanism,
                "env_steps_per_second": steps * count / elapsed,
                "threads": torch_threads(),
            }
            printer.rate(record, label, f"{scenario} {mechanism}", steps * count, "steps", elapsed)
