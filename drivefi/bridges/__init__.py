"""Bridges: adapters to one simulator each (``embedded`` built in, ``carla`` for CARLA servers)."""
