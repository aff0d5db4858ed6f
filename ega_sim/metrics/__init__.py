"""Metrics: outcomes (revenue, welfare, clicks), regret and IC, closed forms from theory."""
