"""The simulated world: distributions, markets and their ground-truth click models.

`make_world(scenario, device)` builds the world of a scenario once; everything downstream
takes it as an argument (world/build.py)."""
