"""The simulated world: distributions, markets and their ground-truth click models."""
