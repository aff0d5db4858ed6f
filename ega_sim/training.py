"""`ega-sim train`: train what a learned mechanism needs, from logs only (and, for a payment
network, from requests drawn with truthful bids, priced under the mechanism's own CTR model)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.config.scenario import ScenarioConfig
from ega_sim.logs.simulate import simulate_logs
from ega_sim.logs.store import read_logs
from ega_sim.progress import Progress
from ega_sim.ranking.train import PCTRTrainConfig, save_cascade_checkpoint, train_pctr
from ega_sim.threads import sets_threads
from ega_sim.world.build import World, as_world


def training_config(section: str, table: dict, source: str = "<dict>"):
    """The training config of `section` ("cascade": PCTRTrainConfig, "ega": EGAConfig,
    "paynet": PaynetTrainConfig) from a TOML table; unknown keys and bad values are
    ConfigErrors naming `source` and the key."""
    from ega_sim.config.errors import ConfigError
    from ega_sim.generative.config import EGAConfig
    from ega_sim.payment.config import PaynetTrainConfig

    if section == "ega":
        return EGAConfig.from_dict(table, source)
    if section == "paynet":
        return PaynetTrainConfig.from_dict(table, source)
    if section != "cascade":
        raise ValueError(f"training section: expected cascade, ega or paynet, got {section!r}")
    known = {spec.name for spec in dataclasses.fields(PCTRTrainConfig)}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(source, key, f"one of {', '.join(sorted(known))}", "unknown key")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(source, key, "a number > 0", value)
    config = dataclasses.replace(PCTRTrainConfig(), **table)
    if not isinstance(config.epochs, int):
        raise ConfigError(source, "epochs", "an integer >= 1", config.epochs)
    return config


def _train_generative(
    world,
    logs,
    out: Path,
    *,
    seed: int,
    epochs: int | None,
    progress: Progress,
    config_path: str | Path | None = None,
) -> str:
    from ega_sim.config.reader import read_toml
    from ega_sim.generative.config import EGAConfig, PretrainConfig
    from ega_sim.generative.train import train_ega

    config = EGAConfig()
    if config_path is not None:
        config = EGAConfig.from_dict(read_toml(Path(config_path)), str(config_path))
    if epochs is not None:
        config = dataclasses.replace(config, pretrain=PretrainConfig(epochs=epochs))
    scenario = world.config
    settings = {"seed": seed, "progress": progress, "device": world.device, "threads": None}
    reports = train_ega(scenario, logs, out, config, world=world, **settings)
    lines = [
        f"trained the EGA-V2 pipeline for {scenario.name} on {logs.n_requests} logged "
        f"requests; checkpoint in {out}"
    ]
    for stage, report in reports.items():
        lines.append(f"  {stage}: {report.get('seconds', 0.0):.1f} s")
    rm = reports["reward_model"]
    lines.append(f"  reward model validation AUC (POI clicks) {rm['validation_poi_auc']:.4f}")
    alignment = reports.get("alignment") or {}
    if alignment.get("curve"):
        kept = next(p for p in alignment["curve"] if p["step"] == alignment["chosen_step"])
        lines.append(
            f"  alignment: kept step {alignment['chosen_step']} of {alignment['steps']} (held-out "
            f"logged bid-weighted clicks / 1,000 by the reward model "
            f"{kept['bid_rpm_model_logged']:.1f}); curve: {out / 'stages/alignment/curve.png'}"
        )
    return "\n".join(lines)


def _copy_allocator(source: Path, out: Path) -> None:
    """Reuse a trained allocator: copy its checkpoint folder (not its logs or payment network)."""
    if not (source / "checkpoint.json").is_file():
        raise ValueError(
            f"--from: {source} holds no trained allocator (no checkpoint.json); make one with "
            "`ega-sim train --mechanism ALLOCATOR/gsp --out DIR`"
        )
    if source.resolve() != out.resolve():
        ignore = shutil.ignore_patterns("logs", "paynet")
        shutil.copytree(source, out, ignore=ignore, dirs_exist_ok=True)


def _train_paynet(
    world, allocator: str, out: Path, *, from_dir, steps, seed, progress, config_path, **rest
) -> str:
    from ega_sim.config.reader import read_toml
    from ega_sim.payment.config import PaynetTrainConfig
    from ega_sim.payment.fit import train_paynet

    config = PaynetTrainConfig()
    if config_path is not None:
        config = PaynetTrainConfig.from_dict(read_toml(Path(config_path)), str(config_path))
    if steps is not None:
        config = dataclasses.replace(config, steps=steps)
    scenario = world.config
    feed = isinstance(scenario, FeedMarketConfig)
    if from_dir is not None:
        if not feed:
            raise ValueError(
                f"--from: the {allocator} allocator of {scenario.name} learns nothing to reuse"
            )
        _copy_allocator(Path(from_dir), out)
    elif feed and allocator != "oracle_cascade" and not (out / "checkpoint.json").is_file():
        allocator_settings = {"seed": seed, "progress": progress, "threads": None, **rest}
        train_mechanism(world, f"{allocator}/gsp", out, **allocator_settings)
    report = train_paynet(world, allocator, out, config, seed=seed, progress=progress, threads=None)
    figures = report["validation"]
    return (
        f"trained {allocator}/paynet for {scenario.name} in {report['seconds']:.1f} s "
        f"({config.steps} steps); held-out revenue/request {figures['revenue_per_request']:.4f}, "
        f"regret/bidder {figures['regret_mean']:.2e} ({figures['regret_per_revenue']:.2%} of "
        f"revenue in all), IR violations {figures['ir_violations']} (own CTR model); "
        f"checkpoint in {out}"
    )


@sets_threads
def train_mechanism(
    world: World | ScenarioConfig,
    mechanism: str,
    out: Path,
    *,
    logs: str | Path | None = None,
    log_requests: int = 50_000,
    seed: int = 0,
    epochs: int | None = None,
    progress: Progress = False,
    config_path: str | Path | None = None,
    from_dir: str | Path | None = None,
    steps: int | None = None,
    threads: int | None = 1,
) -> str:
    """Train and write a checkpoint folder; returns a one-paragraph report. `config_path`: a
    TOML file of EGAConfig keys for ega/gr, of PaynetTrainConfig keys for */paynet.
    `from_dir`: for */paynet, a trained allocator to reuse instead of training one. `world`:
    the scenario's world (a scenario's is built on the CPU): the generative pipeline and
    payment networks train on its device; logs and the cascade's pCTR model on the CPU.
    `threads`: torch's CPU threads for the call (default 1; None keeps the caller's setting),
    restored afterwards. `progress`: see ega_sim/progress.py (a line per stage off a terminal)."""
    world = as_world(world)
    scenario = world.config
    out = Path(out)
    allocator, _, payment = mechanism.partition("/")
    if payment == "paynet":
        return _train_paynet(
            world,
            allocator,
            out,
            from_dir=from_dir,
            steps=steps,
            seed=seed,
            progress=progress,
            config_path=config_path,
            logs=logs,
            log_requests=log_requests,
            epochs=epochs,
        )
    if from_dir is not None or steps is not None:
        raise ValueError(f"--from and --steps train a payment network (*/paynet), not {mechanism}")
    if not isinstance(scenario, FeedMarketConfig) or allocator not in ("cascade", "ega", "gr"):
        raise ValueError(
            f"train: {mechanism} on {scenario.name} learns nothing; evaluate it directly "
            "(learned mechanisms: cascade/*, ega/* and gr/* on feed_market scenarios)"
        )
    if logs is None:
        logs = out / "logs"
        if not (Path(logs) / "meta.json").is_file():  # a rerun resumes on the same logs
            simulate_logs(world, log_requests, logs, seed=seed, progress=progress, threads=None)
        data = read_logs(logs, scenario)
        if (data.meta.get("seed"), data.meta.get("requests")) != (seed, log_requests):
            raise ValueError(
                f"train: {logs} holds logs of seed {data.meta.get('seed')} with "
                f"{data.meta.get('requests')} requests, not seed {seed} with {log_requests}: "
                "pass them with --logs, or use a new --out"
            )
    else:
        data = read_logs(logs, scenario)
    if allocator in ("ega", "gr"):
        return _train_generative(
            world,
            data,
            out,
            seed=seed,
            epochs=epochs,
            progress=progress,
            config_path=config_path,
        )
    config = (
        PCTRTrainConfig()
        if epochs is None
        else dataclasses.replace(PCTRTrainConfig(), epochs=epochs)
    )
    if config.epochs < 1:
        raise ValueError(f"epochs: expected an integer >= 1, got {config.epochs}")
    model, report = train_pctr(data, config, seed=seed, progress=progress)
    save_cascade_checkpoint(out, model, report, scenario, config, data.meta)
    return (
        f"trained the cascade's pCTR model for {scenario.name} on {data.n_requests} logged "
        f"requests in {report['seconds']:.1f} s: validation AUC {report['validation_auc']:.4f}, "
        f"log loss {report['validation_log_loss']:.4f} (constant predictor "
        f"{report['constant_log_loss']:.4f}); checkpoint in {out}"
    )
