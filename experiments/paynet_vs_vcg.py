"""Does the learned payment network find VCG? Myerson's lemma says it must.

On rank-by-score allocation with separable CTRs (a position auction's `cascade`), the only
payment rule that is ex-post IC and IR and earns the most revenue is VCG (the threshold
payment). This script trains `cascade/paynet` on position-auction scenarios and prints, on
held-out requests: its revenue against `cascade/vcg`, its exact-method regret, and the mean
absolute error of its prices against VCG's, request by request (same requests, same slots).
With `--allocator myerson` the reference is `myerson/threshold`, the optimal auction.

    python experiments/paynet_vs_vcg.py --scenario three_bidders_two_slots textbook single_slot
    python experiments/paynet_vs_vcg.py --scenario textbook --steps 4000 --out runs/paynet_vcg
    python experiments/paynet_vs_vcg.py --scenario single_slot --allocator myerson

Each line is also JSON with --json. Training runs on one CPU thread unless --threads says more.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import ega_sim
from ega_sim.payment.config import PaynetTrainConfig
from ega_sim.payment.fit import train_paynet
from ega_sim.seeding import make_generator
from ega_sim.world.build import make_world

REFERENCE = {"cascade": "cascade/vcg", "myerson": "myerson/threshold"}


def price_error(
    world, allocator: str, checkpoint: Path, requests: int, seed: int
) -> tuple[float, float]:
    """Mean |paynet price - reference price| per click over shown ads, and the mean
    reference price."""
    batch = world.sample_requests(requests, make_generator(seed, "price_error"))
    paynet = ega_sim.make_mechanism(f"{allocator}/paynet", world, checkpoint=checkpoint)
    vcg = ega_sim.make_mechanism(REFERENCE[allocator], world)
    with torch.no_grad():
        learned = paynet.run(batch, batch.value_per_click)
        reference = vcg.run(batch, batch.value_per_click)
    assert torch.equal(learned.slot_bidder, reference.slot_bidder)  # same allocator
    shown = reference.allocation.shown
    error = (learned.price_per_click - reference.price_per_click)[shown].abs().mean()
    return float(error), float(reference.price_per_click[shown].mean())


def run(
    name: str, allocator: str, config: PaynetTrainConfig, out: Path, seed: int, requests: int
) -> dict:
    world = make_world(name)
    started = time.perf_counter()
    keep = {"threads": None}  # the count main() set
    report = train_paynet(world, allocator, out, config, seed=seed, progress=True, **keep)
    seconds = time.perf_counter() - started
    settings = {"requests": requests, "seed": seed + 1000, **keep}
    learned = ega_sim.evaluate(f"{allocator}/paynet", world, checkpoint=out, **settings)
    vcg = ega_sim.evaluate(REFERENCE[allocator], world, **settings)
    error, mean_price = price_error(world, allocator, out, requests, seed + 2000)
    return {
        "scenario": name,
        "allocator": allocator,
        "reference": REFERENCE[allocator],
        "seed": seed,
        "steps": config.steps,
        "train_seconds": round(seconds, 1),
        "revenue_paynet": learned.revenue_per_request,
        "revenue_paynet_se": learned.revenue_per_request_se,
        "revenue_vcg": vcg.revenue_per_request,
        "revenue_ratio": learned.revenue_per_request / vcg.revenue_per_request,
        "regret_per_bidder_over_revenue": learned.regret_mean / learned.revenue_per_request,
        "regret_max": learned.regret_max,
        "psi": learned.psi,
        "ir_violation_rate": learned.ir_violation_rate,
        "price_mae": error,
        "price_mae_relative": error / mean_price,
        "validation_history": report["history"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", nargs="+", default=["three_bidders_two_slots"])
    parser.add_argument("--allocator", choices=sorted(REFERENCE), default="cascade")
    parser.add_argument("--steps", type=int, default=None, help="default: PaynetTrainConfig's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--requests", type=int, default=20_000, help="held-out requests")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="keep the checkpoints under this folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = PaynetTrainConfig()
    if args.steps is not None:
        config = PaynetTrainConfig(steps=args.steps)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.out) if args.out else Path(scratch)
        for name in args.scenario:
            row = run(name, args.allocator, config, root / name, args.seed, args.requests)
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            print(
                f"{name} {args.allocator}/paynet: trained {row['steps']} steps in "
                f"{row['train_seconds']} s; revenue {row['revenue_paynet']:.4f} vs "
                f"{row['reference']} {row['revenue_vcg']:.4f} (ratio "
                f"{row['revenue_ratio']:.4f}); regret per bidder "
                f"{row['regret_per_bidder_over_revenue']:.3%} of revenue, max "
                f"{row['regret_max']:.4f}, psi {row['psi']:.3%}; price MAE vs the reference "
                f"{row['price_mae']:.4f} ({row['price_mae_relative']:.2%} of the mean price); "
                f"IR violations {row['ir_violation_rate']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
