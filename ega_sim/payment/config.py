"""The payment network's training settings, recorded with its checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from ega_sim.config.errors import ConfigError
from ega_sim.payment.network import PaynetConfig


@dataclass(frozen=True)
class PaynetTrainConfig:
    """Augmented-Lagrangian training of the payment network; recorded with the checkpoint."""

    steps: int = 2000
    batch_size: int = 512  # requests per step
    learning_rate: float = 2e-3  # Adam, cosine-annealed to 10% over the steps
    random_misreports: int = 8  # uniform misreports on [0, gamma_max x value] per bidder
    gamma_max: float = 2.0
    lambda_init: float = 10.0
    lambda_every: int = 25
    rho_init: float = 1.0
    rho_growth: float = 2.0
    rho_every: int = 100
    rho_max: float = 1.0e3
    validate_every: int = 250
    validation_requests: int = 4096  # rank allocators: held-out requests, exact search
    cached_requests: int = 400  # ega/gr: requests whose misreports are re-run once and cached
    cached_validation_requests: int = 100  # ega/gr: held-out cached requests
    network: PaynetConfig = field(default_factory=PaynetConfig)

    def __post_init__(self) -> None:
        positive_ints = (
            "steps",
            "batch_size",
            "lambda_every",
            "rho_every",
            "validate_every",
            "validation_requests",
            "cached_requests",
            "cached_validation_requests",
        )
        for key in positive_ints:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"paynet {key}: expected an integer >= 1, got {value!r}")
        if isinstance(self.random_misreports, bool) or self.random_misreports < 0:
            raise ValueError(
                f"paynet random_misreports: expected an integer >= 0, got "
                f"{self.random_misreports!r}"
            )
        for key in ("learning_rate", "gamma_max", "rho_init", "rho_max"):
            if not getattr(self, key) > 0:
                raise ValueError(f"paynet {key}: expected a number > 0, got {getattr(self, key)}")
        if not self.lambda_init >= 0:
            raise ValueError(f"paynet lambda_init: expected a number >= 0, got {self.lambda_init}")
        if not self.rho_growth >= 1:
            raise ValueError(f"paynet rho_growth: expected a number >= 1, got {self.rho_growth}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict, source: str = "<dict>") -> PaynetTrainConfig:
        """From a dict such as a TOML table; the network's keys sit under `network`."""
        known = {field.name for field in dataclasses.fields(cls)}
        for key in record:
            if key not in known:
                raise ConfigError(source, key, f"one of {', '.join(sorted(known))}", key)
        values = dict(record)
        try:
            if "network" in values:
                if not isinstance(values["network"], dict):
                    raise ConfigError(source, "network", "a table", repr(values["network"]))
                values["network"] = PaynetConfig(**values["network"])
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ConfigError(source, "<root>", "valid paynet settings", str(error)) from None
