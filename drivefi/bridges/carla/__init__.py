"""The CARLA bridge (``--sim carla``): scenarios, fault plans and user agents on a CARLA server.

=================  ===============================================================================
``opendrive``      the scenario road as OpenDRIVE (``generate_opendrive_world``, ``carla.Map``)
``route``          the ego's route through a map (junctions, explicit routes, road edges) as a
                   lane frame (``RouteFrame``, a :class:`drivefi.road.RoadGeometry`)
``observe``        the safety potential of an observation
``sensors``        Leaderboard sensor specs -> blueprint attributes; sensor data -> agent data
``settings``       connection options (``CarlaConfig``); town placements (``drivefi.placement``)
``connection``     cached, version-checked connections; reconnect and restart after failures
``bridge``         ``CarlaBridge`` and ``make_carla_bridge`` (the factory the CLI/campaign call)
``agent``          Leaderboard-style user agents as the ADS (``load_agent_ads``)
``run``            one run with clean-up (``run_carla``), golden traces (``record_golden_carla``)
``testing``        ``FakeCarla``: a fake server with carla 0.9.16's signatures and its own physics
=================  ===============================================================================

The ``carla`` client package (0.9.16, extra ``drivefi[carla]``) is imported only when a run starts.
"""

from __future__ import annotations

_EXPORTS = {
    "CarlaBridge": "bridge",
    "make_carla_bridge": "bridge",
    "CarlaConfig": "settings",
    "CarlaPlacement": "settings",
    "carla_config": "settings",
    "load_carla_scenario": "settings",
    "check_server": "connection",
    "CarlaConnectionError": "connection",
    "CarlaVersionError": "connection",
    "AgentADS": "agent",
    "AgentError": "agent",
    "load_agent_ads": "agent",
    "run_carla": "run",
    "record_golden_carla": "run",
    "write_opendrive": "opendrive",
    "blueprint_attributes": "sensors",
    "to_agent_data": "sensors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
