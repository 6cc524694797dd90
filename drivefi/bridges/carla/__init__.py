"""The CARLA bridge (``--sim carla``): scenarios, fault plans and user agents on a CARLA server.

=================  ===============================================================================
``route``          the ego's route through a map (junctions, explicit routes, road edges) as a
                   lane frame (``RouteFrame``, a :class:`drivefi.world.road.LaneFrame`)
``observe``        the safety potential of an observation
``settings``       connection options (``CarlaConfig``); town placements (``drivefi.world.placement``)
``connection``     cached, version-checked connections; reconnect and restart after failures
``bridge``         ``CarlaBridge`` and ``make_carla_bridge`` (the factory the CLI/campaign call)
``agent``          deprecated import path of the agent base class (:mod:`drivefi.stacks.agent`)
=================  ===============================================================================

The scenario road as OpenDRIVE is :mod:`drivefi.world.opendrive`; Leaderboard sensor specs and
their data are :mod:`drivefi.stacks.agent.sensors`; the fake server of the tests is
``tests/drivefi_fakes/carla_server.py``.

The ``carla`` client package (0.9.16, extra ``drivefi[carla]``) is imported only when a run starts.
"""

from __future__ import annotations

from drivefi.util.lazy import lazy_exports

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
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
