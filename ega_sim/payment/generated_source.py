"""Training data for `paynet` on a generated list (`ega`, `gr`): a cache of re-runs.

A generated list can only be found by running beam search, far too slow to repeat for every
misreport at every training step. The allocator is frozen while the payment network trains, so
each (request, bidder, candidate bid) is run once, up front, and what the network needs is
kept: where the bid puts the bidder, its clicks under the reward model, and its features
(payment/generated_rule.py, its own-bid thresholds included). Candidate bids: the truthful one,
the paper's multipliers and uniform draws on [0, gamma_max x value]. Each (request, bidder) is
one own-bid response (mechanisms/bid_response.py) that probes its candidate bids: the lists
there and the thresholds at each come from the same re-runs, a request's together. Training
steps then sample requests from the cache.
"""

from __future__ import annotations

import torch

from ega_sim.mechanisms.bid_response import own_bid_response
from ega_sim.metrics.regret import PAPER_MULTIPLIERS
from ega_sim.payment.deviations import Deviations, training_misreports
from ega_sim.payment.generated_rule import THRESHOLDS, generated_features
from ega_sim.payment.network import PaymentNetwork
from ega_sim.progress import Progress, track


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
        progress: Progress = False,
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
        features, clicks = [], []
        scale = float(network.value_scale)
        step = max(1, mechanism.rerun_rows // (n_bidders * 4 * n_candidates))
        starts = range(0, n_requests, step)
        for start in track(starts, "paynet cache", progress=progress, unit="chunk"):
            stop = min(n_requests, start + step)
            # Every bidder's own-bid response, its candidate bids probed: the lists there, and
            # how far each candidate bid could fall keeping the position or the list.
            request = torch.arange(start, stop, device=values.device).repeat_interleave(n_bidders)
            bidder = torch.arange(n_bidders, device=values.device).repeat(stop - start)
            candidates = bids[request, bidder]  # [P, C]
            response, lists = own_bid_response(
                mechanism, requests, values, request, bidder, candidates.amax(1), candidates,
                keep_extra=True,
            )  # fmt: skip
            thresholds = mechanism._thresholds(response, candidates).reshape(-1, 1, THRESHOLDS)
            rows = request.repeat_interleave(n_candidates)
            own = bidder.repeat_interleave(n_candidates)
            deviated = values[rows].scatter(1, own.unsqueeze(1), candidates.reshape(-1, 1))
            is_own = lists.slot_bidder == own.unsqueeze(1)  # [rows, K]
            shown = is_own.any(dim=1)
            slot = is_own.to(torch.int8).argmax(dim=1, keepdim=True)  # [rows, 1]
            every_slot = generated_features(
                lists.slot_bidder,
                lists.slot_ctr_model,
                lists.slot_log_z,
                deviated,
                mechanism.max_ads,
                scale,
                thresholds.expand(-1, is_own.shape[1], -1),
            )  # [rows, K, F]
            own_features = every_slot.gather(
                1, slot.unsqueeze(2).expand(-1, 1, every_slot.shape[2])
            ).squeeze(1)
            own_clicks = torch.where(shown, lists.slot_ctr_model.gather(1, slot).squeeze(1), 0)
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
