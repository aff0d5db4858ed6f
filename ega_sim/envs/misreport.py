"""`ega-sim misreport`: which misreport pays, mechanism by mechanism?

For each mechanism, against truthful opponents: the focal advertiser's expected utility per
request as a function of its bid multiplier (one curve, common random numbers, 95% intervals),
the multiplier a UCB bandit converges to and, with Stable-Baselines3 installed, the value-
weighted multiplier a PPO agent bids after training, each with its utility gain over truthful
bidding. Results: a tidy table (misreport.csv, one row per mechanism, kind and multiplier) and a
figure (misreport.png), both written atomically to the output folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium
import numpy as np
import pandas as pd
import torch

from ega_sim.atomic import write_bytes_atomic, write_text_atomic
from ega_sim.envs import ENV_ID
from ega_sim.envs.action_scaling import to_policy_actions
from ega_sim.envs.best_response import learn_multiplier, utility_curve
from ega_sim.envs.market import AuctionMarket
from ega_sim.envs.strategies import MULTIPLIER_GRID, UCBBandit
from ega_sim.intervals import Z95
from ega_sim.provenance import provenance
from ega_sim.threads import sets_threads
from ega_sim.world.build import as_world

CURVE_GRID = tuple(round(0.05 * k, 2) for k in range(1, 41))  # 0.05 .. 2.0


def _env(market: AuctionMarket, per_step: int, max_steps: int):
    """AdAuction-v0 on the market's world and mechanism, against truthful opponents, rewarded
    with expected utility."""
    return gymnasium.make(
        ENV_ID,
        scenario=market.world,
        mechanism=market.mechanism,
        requests_per_step=per_step,
        reward="expected",
        max_steps=max_steps,
        disable_env_checker=True,
    )


def _bandit(market: AuctionMarket, steps: int, per_step: int, seed: int) -> float:
    env = _env(market, per_step, max(steps, 1))
    env.reset(seed=seed)
    return learn_multiplier(env, UCBBandit(MULTIPLIER_GRID), steps)


def _ppo(market: AuctionMarket, steps: int, per_step: int, seed: int):
    """(multiplier, utility per request of PPO, of truthful bidding on the same requests)."""
    from ega_sim.envs.sb3 import evaluate_policy, normalized, train_ppo

    def make():
        return normalized(_env(market, per_step, 16))

    env = make()
    env.reset(seed=seed)
    model = train_ppo(env, steps=steps, seed=seed)
    evaluation = make()
    evaluation.reset(seed=seed + 1)
    multiplier, utility = evaluate_policy(model, evaluation, steps=16)

    # Multiplier 1 (bid the value) as a normalized action: 0 in the default [0, 2] box.
    truthful_action = to_policy_actions(np.ones(per_step), evaluation.normalized_gamma_max)

    class Truthful:
        def predict(self, observation, deterministic=True):
            return np.broadcast_to(truthful_action, observation.shape[:-1]).copy(), None

    evaluation.reset(seed=seed + 1)
    _, truthful = evaluate_policy(Truthful(), evaluation, steps=16)
    return multiplier, utility, truthful


@sets_threads
def run_misreport_study(
    scenario,
    mechanisms: list[str],
    *,
    checkpoint=None,
    requests: int = 20_000,
    seed: int = 0,
    bandit_steps: int = 300,
    ppo_steps: int = 0,
    requests_per_step: int = 64,
    threads: int | None = 1,
) -> pd.DataFrame:
    """The tidy table of the study (see the module docstring). `scenario` is a world or a
    scenario (whose world is built on the CPU); each mechanism is built once on it.
    `threads`: torch's CPU threads for the call (default 1; None keeps the caller's setting),
    restored afterwards."""
    for key, value, minimum in (
        ("requests", requests, 1),
        ("bandit_steps", bandit_steps, 0),
        ("ppo_steps", ppo_steps, 0),
        ("requests_per_step", requests_per_step, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    world = as_world(scenario)
    rows = []
    for name in mechanisms:
        market = AuctionMarket(world, name, checkpoint)
        curve = utility_curve(market, CURVE_GRID, requests=requests, seed=seed)
        truthful = curve.utility_at(1.0)

        def row(
            kind: str,
            multiplier: float,
            utility: float,
            se: float,
            truthful=truthful,
            name=name,
            market=market,
        ) -> dict:
            gain = utility / truthful - 1 if truthful > 0 else math.nan
            return {
                "scenario": market.scenario.name,
                "mechanism": name,
                "kind": kind,
                "multiplier": multiplier,
                "utility_per_request": utility,
                "utility_se": se,
                "gain_over_truthful": gain,
                "seed": seed,
            }

        for m, u, se in zip(curve.multipliers, curve.utility, curve.utility_se, strict=True):
            rows.append(row("curve", float(m), float(u), float(se)))
        best = int(np.argmax(curve.utility))
        rows.append(
            row("best_response", curve.best_multiplier, float(curve.utility[best]), math.nan)
        )
        if bandit_steps > 0:
            learned = _bandit(market, bandit_steps, requests_per_step, seed)
            nearest = int(np.argmin(np.abs(curve.multipliers - learned)))
            rows.append(row("bandit", learned, float(curve.utility[nearest]), math.nan))
        if ppo_steps > 0:
            multiplier, utility, truthful_there = _ppo(market, ppo_steps, requests_per_step, seed)
            rows.append(row("ppo", multiplier, utility, math.nan, truthful=truthful_there))
    table = pd.DataFrame(rows)
    table["threads"] = torch.get_num_threads()
    for key, value in provenance().items():
        table[key] = value
    return table


LEARNERS = (
    ("best_response", "*", "best response"),
    ("bandit", "o", "UCB bandit"),
    ("ppo", "^", "PPO"),
)


def misreport_figure(table: pd.DataFrame) -> bytes:
    """Utility per request against the bid multiplier, one line per mechanism (95% bands), with
    the learners' multipliers marked: a PNG in the report's style, each mechanism in the colour
    the report gives it (`mechanism_colors`, by the order of the mechanisms)."""
    from matplotlib.lines import Line2D

    from ega_sim.report.figures.common import (
        LEGEND_FONTSIZE,
        figure_style,
        mechanism_colors,
        pyplot,
        to_png,
    )

    curves = table[table["kind"] == "curve"]
    colors = mechanism_colors(list(pd.unique(curves["mechanism"])))
    with figure_style():
        figure, axes = pyplot().subplots(figsize=(7, 4.4))
        for name, part in curves.groupby("mechanism", sort=False):
            color = colors[name]
            axes.plot(part["multiplier"], part["utility_per_request"], color=color, label=name)
            band = 1.96 * part["utility_se"]
            axes.fill_between(
                part["multiplier"],
                part["utility_per_request"] - band,
                part["utility_per_request"] + band,
                color=color,
                alpha=0.15,
                linewidth=0,
            )
            for kind, marker, _ in LEARNERS:
                points = table[(table["mechanism"] == name) & (table["kind"] == kind)]
                for _, point in points.iterrows():
                    nearest = part.iloc[(part["multiplier"] - point["multiplier"]).abs().argmin()]
                    axes.scatter(
                        point["multiplier"],
                        nearest["utility_per_request"],
                        color=color,
                        marker=marker,
                        s=70 if marker == "*" else 45,
                        edgecolor="black",
                        linewidth=0.6,
                        zorder=4 if marker == "*" else 3,  # the star stays visible on a dot
                    )
        axes.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        axes.set_xlabel("bid multiplier (bid / value)")
        axes.set_ylabel("focal advertiser's utility per request")
        axes.set_title("Utility against misreport, truthful opponents (95% bands)")
        handles = [Line2D([], [], color=colors[name], label=name) for name in colors]
        kinds = set(table["kind"])
        handles += [
            Line2D([], [], color="grey", marker=marker, markeredgecolor="black", linestyle="",
                   label=text)
            for kind, marker, text in LEARNERS
            if kind in kinds
        ]  # fmt: skip
        axes.legend(handles=handles, fontsize=LEGEND_FONTSIZE, loc="best")
        figure.tight_layout()
        return to_png(figure)


def write_study(table: pd.DataFrame, out: str | Path) -> list[Path]:
    """misreport.csv and misreport.png in `out`, each written atomically."""
    out = Path(out)
    return [
        write_text_atomic(out / "misreport.csv", table.to_csv(index=False)),
        write_bytes_atomic(out / "misreport.png", misreport_figure(table)),
    ]


def _utility(utility: float, se: float) -> str:
    """A utility per request, with its 95% half-width over requests where it has one."""
    interval = f" ±{Z95 * se:.4f}" if math.isfinite(se) else ""
    return f"u {utility:.4f}{interval}"


def summary_lines(table: pd.DataFrame) -> list[str]:
    """One line per mechanism: the truthful utility (multiplier 1), then the best response's,
    the bandit's and PPO's multipliers, utilities and gains over truthful bidding. A utility
    read off the curve carries its 95% interval (± 1.96 standard errors over requests); PPO's,
    measured on its own requests, has none."""
    lines = []
    for name, part in table.groupby("mechanism", sort=False):
        curve = part[part["kind"] == "curve"]

        def on_curve(multiplier: float, curve=curve) -> pd.Series:
            return curve.loc[(curve["multiplier"] - multiplier).abs().idxmin()]

        truthful = on_curve(1.0)
        truthful_utility = _utility(truthful["utility_per_request"], truthful["utility_se"])
        pieces = [f"{name:<22}", f"truthful {truthful_utility}"]
        for kind in ("best_response", "bandit", "ppo"):
            found = part[part["kind"] == kind]
            if len(found):
                entry = found.iloc[0]
                gain = entry["gain_over_truthful"]
                change = f"{gain:+.1%}" if math.isfinite(gain) else "truthful earns 0"
                se = on_curve(entry["multiplier"])["utility_se"] if kind != "ppo" else math.nan
                utility = _utility(entry["utility_per_request"], se)
                pieces.append(f"{kind} x{entry['multiplier']:.2f} ({utility}, {change})")
        lines.append("  ".join(pieces))
    return lines
