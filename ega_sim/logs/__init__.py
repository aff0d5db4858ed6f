"""Logged data of a feed market: the logging policy, simulation, and the on-disk format."""
