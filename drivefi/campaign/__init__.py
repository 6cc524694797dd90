"""Campaigns: execute a fault plan on a scenario through a bridge, storing every outcome."""
