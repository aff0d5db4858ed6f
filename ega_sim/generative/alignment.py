"""Aligning the generator with the platform's objective (EGA-V2 section 3.4): a
non-autoregressive policy gradient with per-item marginal rewards.

For a logged request, the mechanism's chosen list S* (beam search with token-level bidding, the
frozen reward model picking the best beam) earns R(S*) = sum over its ads of bid x pCTR (RM).
Item i's reward is its marginal contribution r_i = R(S*) - R(S*_-i), where S*_-i is the greedy
re-decode with i banned. Rewards are normalized over the batch (zero mean, unit variance: the
baseline), and the loss is - sum_i r_i log z_i, with z_i the item's token-level-bidding
probability at its step, recomputed with gradients by a teacher-forced decoder pass.

Trained parameters: the decoder blocks, the final norm and the POI code heads. Frozen: the
history encoder, the token embeddings and the creative (MTP) head, so alignment moves which
items are chosen, not how items and users are represented.

How many steps: alignment maximizes the reward model's view of revenue, and learns its errors
too. With `checkpoints`, the generator is measured at evenly spaced steps and the checkpoint
kept is the one with the most bid-weighted clicks by the reward model on held-out logged
requests among those whose likelihood of the held-out logged lists has not drifted more than
`drift_tolerance` from the pre-trained generator's: a criterion the platform can compute. With
a world (the simulator), the same checkpoints are also measured against the true user model:
the alignment-versus-truth curve, a diagnostic that never enters the choice.
"""

from __future__ import annotations

import time

import torch

from ega_sim.generative.beam_search import allowed_items, beam_search, candidate_set
from ega_sim.generative.config import AlignmentConfig
from ega_sim.generative.token_bidding import item_log_probs
from ega_sim.progress import Progress, Stage
from ega_sim.seeding import make_generator
from ega_sim.world.requests import MarketRequests


def logged_requests(logs, rows: torch.Tensor) -> MarketRequests:
    """The logged requests' candidate sets and bids as MarketRequests."""
    x = logs.exposures
    return MarketRequests(
        x["user"][rows],
        x["candidate_advertiser"][rows],
        x["candidate_bid"][rows],
        x["organic_poi"][rows],
    )


def list_revenue_proxy(mechanism, requests: MarketRequests, bids, items, creative) -> torch.Tensor:
    """R(S) = sum over the ads of bid x RM pCTR, for lists items [B, S, K] -> [B, S]."""
    n_ads = requests.n_bidders
    p_poi = mechanism.score_lists(requests, items, creative)
    is_ad = items < n_ads
    bid = bids.unsqueeze(1).expand(-1, items.shape[1], -1).gather(2, items.clamp(max=n_ads - 1))
    return torch.where(is_ad, bid * p_poi, 0.0).sum(-1)


def teacher_forced_log_z(mechanism, candidates, items, creative) -> torch.Tensor:
    """log z [B, K] of the given lists' items under the generator, with gradients."""
    generator, tables = mechanism.parts.generator, mechanism.parts.tables
    batch, n_items = items.shape
    user = candidates.user
    memory = generator.encode(
        tables.poi_codes[tables.user_history[user]],
        tables.poi_features[tables.user_history[user]],
        tables.user_features[user],
    )
    rows = torch.arange(batch, device=items.device)
    poi_codes = candidates.poi_codes[rows.unsqueeze(1), items]  # [B, K, Lp]
    features = candidates.features[rows.unsqueeze(1), items]
    creative_codes = candidates.creative_codes[rows.unsqueeze(1), items, creative.clamp(min=0)]
    tokens = generator.item_embedding(poi_codes, features, creative_codes)
    states = generator.decode(tokens[:, :-1], memory)  # [B, K, d]
    code_bias = generator.poi_heads.code_bias(candidates.poi_codes)  # [B, I, Lp]
    max_ads = len(mechanism.scenario.requests.ad_positions)
    used = torch.zeros_like(candidates.is_ad)
    ads_shown = torch.zeros(batch, dtype=torch.long, device=items.device)
    bidding = mechanism.bidding if mechanism.uses_bids else None
    out = []
    for step in range(n_items):  # K steps, each batched over requests
        allowed = allowed_items(used, candidates.is_ad, candidates.organic_rank, ads_shown, max_ads)
        scores = generator.poi_heads.own_logits(states[:, step], candidates.poi_codes, code_bias)
        log_z = item_log_probs(scores, candidates.tree, candidates.bids, allowed, bidding)
        chosen = items[:, step]
        out.append(log_z[rows, chosen])
        used = used.clone()
        used[rows, chosen] = True
        ads_shown = ads_shown + candidates.is_ad[rows, chosen].long()
    return torch.stack(out, dim=1)


def align(
    mechanism,
    logs,
    config: AlignmentConfig | None = None,
    *,
    seed: int = 0,
    progress: Progress = False,
    world=None,
) -> dict:
    """Policy-gradient alignment of mechanism.parts.generator in place; returns a report. With
    `config.checkpoints`, the generator is measured at evenly spaced steps and the checkpoint
    chosen by the platform's criterion (module docstring) is the one kept; with a `world`, the
    truth is measured beside the reward model at each checkpoint (the curve; never used to
    choose)."""
    config = AlignmentConfig() if config is None else config
    started = time.perf_counter()
    generator = mechanism.parts.generator
    trained = [
        *generator.decoder.parameters(),
        *generator.final_norm.parameters(),
        *generator.poi_heads.parameters(),
    ]
    for parameter in generator.parameters():
        parameter.requires_grad_(False)
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(trained, lr=config.learning_rate)
    stream = make_generator(seed, "alignment", "batches")
    n_ads_max = len(mechanism.scenario.requests.ad_positions)
    device = logs.exposures["user"].device
    pool = torch.arange(logs.n_requests, device=device)
    held_out, curve_requests, at = None, None, set()
    if config.checkpoints:
        order = torch.randperm(
            logs.n_requests, generator=make_generator(seed, "alignment", "held_out")
        )
        n_held = max(1, int(logs.n_requests * config.held_out_share))
        held_out, pool = order[:n_held].to(device), order[n_held:].to(device)
        at = {round(config.steps * k / config.checkpoints) for k in range(config.checkpoints + 1)}
        if world is not None:
            curve_requests = world.sample_requests(
                config.curve_requests, make_generator(seed, "alignment", "curve")
            )
    history, curve, states = [], [], []

    def checkpoint(step: int) -> None:
        generator.eval()
        figures = _checkpoint_figures(mechanism, logs, held_out, world, curve_requests)
        curve.append({"step": step, **figures})
        states.append({k: v.detach().clone() for k, v in generator.state_dict().items()})

    bar = Stage("align", config.steps, progress=progress)
    for step in range(config.steps):
        if step in at:
            checkpoint(step)
        pick = torch.randint(len(pool), (config.batch_size,), generator=stream)
        rows = pool[pick.to(device)]
        requests = logged_requests(logs, rows)
        bids = requests.value_per_click
        with torch.no_grad():
            generator.eval()
            shown = mechanism.allocate(requests, bids)
            items, creative = shown.slot_item, shown.slot_creative
            chosen_value = list_revenue_proxy(
                mechanism, requests, bids, items.unsqueeze(1), creative.unsqueeze(1)
            )[:, 0]  # [B]
            candidates = candidate_set(
                mechanism.parts.tables, mechanism.parts.platform, requests, bids.float()
            )
            reward = _marginal_rewards(
                mechanism, requests, bids, candidates, items, chosen_value, n_ads_max
            )  # [B, K]
        normalized = (reward - reward.mean()) / reward.std().clamp(min=1e-9)
        generator.train()
        log_z = teacher_forced_log_z(mechanism, candidates, items, creative)
        loss = -(normalized * log_z).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({"loss": loss.item(), "revenue_proxy": float(chosen_value.mean())})
        bar.update(**history[-1])
    bar.close()
    chosen = config.steps
    if held_out is not None:
        checkpoint(config.steps)
        chosen = _choose(curve, config.drift_tolerance)
        generator.load_state_dict(states[[c["step"] for c in curve].index(chosen)])
    generator.eval()
    for parameter in generator.parameters():
        parameter.requires_grad_(True)
    head = history[: max(1, len(history) // 5)]
    tail = history[-max(1, len(history) // 5) :]
    return {
        "steps": len(history),
        "chosen_step": chosen,
        "first_revenue_proxy": sum(h["revenue_proxy"] for h in head) / len(head),
        "final_revenue_proxy": sum(h["revenue_proxy"] for h in tail) / len(tail),
        "curve": curve,
        "seconds": time.perf_counter() - started,
        "trained_parameters": sum(p.numel() for p in trained),
    }


def _choose(curve: list[dict], drift_tolerance: float) -> int:
    """The step whose generator earns the most bid-weighted clicks by the reward model on the
    held-out logged requests, among those whose held-out log-likelihood of the logged lists
    stays within drift_tolerance of the start: the reward model was fitted on logged lists, and
    its errors grow as the generator drifts from them (what a platform can check; no truth)."""
    start = curve[0]["held_out_nll"]
    near = [c for c in curve if c["held_out_nll"] <= start * (1 + drift_tolerance)]
    return max(near, key=lambda c: c["bid_rpm_model_logged"])["step"]


@torch.no_grad()
def _checkpoint_figures(mechanism, logs, held_out, world, curve_requests) -> dict:
    """The platform's figures on held-out logged requests (the generator's negative
    log-likelihood of their logged lists, the reward model's bid-weighted clicks per 1,000 and
    CTR-poi of the lists it now generates) and, with a world, the same lists' figures by the
    reward model and by the truth on the world's requests."""
    x, tables = logs.exposures, mechanism.parts.tables
    batch = tables.list_batch(
        x["user"][held_out], x["poi"][held_out], x["advertiser"][held_out], x["creative"][held_out]
    )
    _, losses = mechanism.parts.generator.loss(batch)
    figures = {"held_out_nll": losses["poi_loss"] + losses["creative_loss"]}
    requests = logged_requests(logs, held_out)
    figures |= _list_figures(mechanism, requests, None, "logged")
    if world is not None:
        figures |= _list_figures(mechanism, curve_requests, world, "world")
    return figures


def _list_figures(mechanism, requests, world, where: str) -> dict:
    """bid-weighted clicks per 1,000 requests (what alignment maximizes; revenue at first price)
    and CTR-poi of the generated lists, by the reward model and, with a world, by the truth."""
    bids = requests.value_per_click
    allocation = mechanism.allocate(requests, bids)
    shown = allocation.shown
    bid = bids.gather(1, allocation.slot_bidder.clamp(min=0))
    ads = max(int(shown.sum()), 1)
    clicks = {"model": torch.where(shown, allocation.slot_ctr_model, 0.0)}
    if world is not None:
        truth = world.list_clicks(requests, allocation).poi_clicks
        clicks["truth"] = torch.where(shown, truth, 0.0)
    figures = {}
    for source, per_slot in clicks.items():
        figures[f"bid_rpm_{source}_{where}"] = 1000 * float((bid * per_slot).sum(1).mean())
        figures[f"ctr_poi_{source}_{where}"] = float(per_slot.sum()) / ads
    return figures


def _marginal_rewards(mechanism, requests, bids, candidates, items, chosen_value, max_ads):
    """r_i = R(S*) - R(greedy list without i) for every item of S* [B, K]."""
    batch, n_items = items.shape
    n_candidates = candidates.n_candidates
    expanded = lambda t: t.repeat_interleave(n_items, dim=0)  # noqa: E731
    banned = torch.zeros((batch * n_items, n_candidates), dtype=torch.bool, device=items.device)
    banned[torch.arange(batch * n_items, device=items.device), items.reshape(-1)] = True
    without = candidates.rows(torch.arange(batch, device=items.device).repeat_interleave(n_items))
    lists = beam_search(
        mechanism.parts.generator,
        mechanism.parts.tables,
        without,
        n_items=n_items,
        beams=1,
        max_ads=max_ads,
        bidding=mechanism.bidding if mechanism.uses_bids else None,
        banned=banned,
    )
    repeated = requests.repeat_each(n_items)
    value = list_revenue_proxy(mechanism, repeated, expanded(bids), lists.items, lists.creative)
    return chosen_value.unsqueeze(1) - value.view(batch, n_items)
