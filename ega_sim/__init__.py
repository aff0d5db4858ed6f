"""ega-sim: simulate ad auctions and measure mechanisms, from GSP and VCG to EGA-V2.

>>> import ega_sim
>>> world = ega_sim.make_world("textbook")
>>> result = ega_sim.evaluate("cascade/vcg", world, requests=1000, seed=0)
>>> result.regret_max < 1e-9
True
"""

from ega_sim.config import ConfigError, load_scenario
from ega_sim.envs import register_envs
from ega_sim.evaluation import EvaluationResult, evaluate
from ega_sim.mechanisms import make_mechanism, mechanism_names
from ega_sim.provenance import package_version
from ega_sim.world.build import make_world

__version__ = package_version()
register_envs()  # ega_sim/AdAuction-v0 for gymnasium.make

__all__ = [
    "ConfigError",
    "EvaluationResult",
    "__version__",
    "evaluate",
    "load_scenario",
    "make_mechanism",
    "make_world",
    "mechanism_names",
]
