"""Mechanisms at equilibrium: learn every advertiser's bid function at once, certify how close
to equilibrium it is, and measure revenue, welfare and utility there (DESIGN.md section 4b)."""
