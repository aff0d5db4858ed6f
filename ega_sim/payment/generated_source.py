"""Training data for `paynet` on a generated list (`ega`, `gr`): a cache of re-runs.

A generated list can only be found by running beam search, far too slow to repeat for every
misreport at every training step. The allocator is frozen while the payment network trains, so
each (request, bidder, candidate bid) is run once, up front, and what the network needs is
kept: where the bid puts the bidder, its clicks under the reward model, and its features
(payment/generated_rule.py). Candidate bids: the truthful one, the paper's multipliers and
uniform draws on [0, gamma_max x value]; a request's re-runs go through the allocator together
(`allocate_searches`, which shares their beam search). Training steps then sample requests from
the cache.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ega_sim.metrics.regret import PAPER_MULTIPLIERS
from ega_sim.metrics.rerun import deviation_profiles
from ega_sim.payment.deviations import Deviations, training_misreports
from ega_sim.payment.generated_rule import generated_features
from ega_sim.payment.network import PaymentNetwork


class GeneratedDeviationSource:
    """Cached deviations of a generative allocator for a fixed set of requests."""

    def __init__(
        self,
        mechanism,
        requests,
        network: PaymentNetwork,
        *,
        random_draws: int,
        gamma_max: float,
        generator: torch.Generator,
        progress: bool = False,
    ):
        self.network = network
        self.n_bidders = requests.n_bidders
        values = requests.value_per_click  # [R, N]
        bids = training_misreports(
            values,
            None,
            multipliers=PAPER_MULTIPLIERS,
            random_draws=random_draws,
            gamma_max=gamma_max,
            generator=generator,
        )  # [R, N, C]
        n_requests, n_bidders, n_candidates = bids.shape
        per_request = n_bidders * n_candidates
        step = max(1, mechanism.rerun_rows // per_request)  # re-runs per allocator call
        features, clicks = [], []
        scale = float(network.value_scale)
        starts = range(0, n_requests, step)
        for start in tqdm(starts, desc="paynet cache", disable=not progress, unit="chunk"):
            stop = min(n_requests, start + step)
            every = torch.arange(n_bidders, device=values.device).expand(stop - start, -1)
            profiles = deviation_profiles(
                values[start:stop],
                bids[start:stop],
                every,
                torch.ones_like(every, dtype=torch.bool),
            )  # [b, N * C, N]: request-major, then bidder, then candidate bid
            allocation = mechanism.allocate_searches(requests.slice(start, stop), profiles)
            deviated = profiles.reshape(-1, n_bidders)
            own = every.repeat_interleave(n_candidates, dim=1).reshape(-1)
            is_own = allocation.slot_bidder == own.unsqueeze(1)  # [rows, K]
            shown = is_own.any(dim=1)
            slot = is_own.to(torch.int8).argmax(dim=1, keepdim=True)  # [rows, 1]
            every_slot = generated_features(
                allocation.slot_bidder,
                allocation.slot_ctr_model,
                allocation.slot_log_z,
                deviated,
                mechanism.max_ads,
                scale,
            )  # [rows, K, F]
            own_features = every_slot.gather(
                1, slot.unsqueeze(2).expand(-1, 1, every_slot.shape[2])
            ).squeeze(1)
            own_clicks = torch.where(shown, allocation.slot_ctr_model.gather(1, slot).squeeze(1), 0)
            shape = (stop - start, n_bidders, n_candidates)
            features.append(own_features.to(torch.float32).reshape(*shape, -1))
            clicks.append(own_clicks.reshape(shape))
        self.values = values
        self.bids = bids
        self.features = torch.cat(features)  # [R, N, C, F]
        self.clicks = torch.cat(clicks)  # [R, N, C]

    def _deviations(self, rows: torch.Tensor) -> Deviations:
        bids, clicks = self.bids[rows], self.clicks[rows]
        price = torch.where(clicks > 0, self.network(self.features[rows], bids), 0.0)
        return Deviations(self.values[rows], bids, clicks, price)

    def training_batch(self, size: int, generator: torch.Generator) -> Deviations:
        """`size` cached requests drawn with replacement."""
        rows = torch.randint(len(self.values), (size,), generator=generator)
        return self._deviations(rows.to(self.values.device))

    def all(self) -> Deviations:
        """Every cached request (validation)."""
        return self._deviations(torch.arange(len(self.values), device=self.values.device))
