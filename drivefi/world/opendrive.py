"""OpenDRIVE from a scenario's road, for ``Client.generate_opendrive_world`` and ``carla.Map``.

The scenario's road is one OpenDRIVE road (id 0) whose plan view is the scenario's reference line
(its right edge): a ``<line/>`` or ``<arc/>`` geometry per segment, exactly as
:class:`drivefi.world.road.RoadGeometry` lays them out. A ``<laneOffset>`` of ``lanes * lane_width``
moves OpenDRIVE's centre lane to the road's left edge, so the driving lanes are right lanes
(ids -1 .. -lanes, all driving along s, right-hand traffic) and OpenDRIVE's ``s`` and lateral
offsets are the scenario's ``s`` and ``d`` with no conversion. DriveFI lane ``i`` (0 = rightmost)
is OpenDRIVE lane ``i - lanes``. A shoulder on each side keeps a car that leaves the road on
ground. The first segment is extended backwards (``lead_in``) and the last one forwards
(``tail``), as the embedded road extends them, so actors that start at s = 0 and cars that drive
past the end stay on a road; OpenDRIVE ``s`` is therefore scenario ``s + lead_in``.

The road carries a speed limit (``<type><speed max=".." unit="m/s"/></type>``: the scenario's
cruise speed, the speed the road is driven at) and the header the ego's set speed and size as
``<userData code="drivefi.*" value=".."/>`` records (``set_speed`` [m/s], ``ego_length``,
``ego_width``, ``ego_wheelbase`` [m]), so an agent reading ``sensor.opendrive_map`` finds them;
:func:`opendrive_user_data` reads them back.

CARLA's world is left-handed: a point (x, y) and heading theta of the scenario (x east, y north,
theta counter-clockwise) is ``carla.Location(x, -y)`` and ``carla.Rotation(yaw=-degrees(theta))``;
:func:`to_carla` and :func:`from_carla` convert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape

from drivefi.world.road import _advance
from drivefi.world.scenario import Road, Scenario

ROAD_ID = 0
GEO_REFERENCE = "+proj=tmerc +lat_0=0 +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"


@dataclass(frozen=True)
class OpenDrive:
    """An OpenDRIVE document written for a scenario road, and how to address it."""

    xodr: str
    road_id: int
    lanes: int
    lane_width: float
    lead_in: float  # OpenDRIVE s = scenario s + lead_in
    length: float  # OpenDRIVE road length [m]

    def lane_id(self, lane: int) -> int:
        """OpenDRIVE lane id of DriveFI lane ``lane`` (0 = rightmost)."""
        if not 0 <= lane < self.lanes:
            raise ValueError(f"lane {lane} outside 0..{self.lanes - 1}")
        return lane - self.lanes

    def lane_index(self, lane_id: int) -> int | None:
        """DriveFI lane of an OpenDRIVE lane id, None for shoulders and unknown ids."""
        i = lane_id + self.lanes
        return i if lane_id < 0 and 0 <= i < self.lanes else None

    def odr_s(self, s: float) -> float:
        return s + self.lead_in


def _num(v: float) -> str:
    return repr(float(v))


def write_opendrive(
    road: Road,
    name: str = "drivefi",
    lead_in: float = 50.0,
    tail: float = 150.0,
    shoulder: float = 2.5,
    speed_limit: float | None = None,
    user_data: dict[str, float] | None = None,
) -> OpenDrive:
    """The OpenDRIVE 1.4 document of ``road`` (see the module docstring for the layout);
    ``speed_limit`` [m/s] and ``user_data`` (``drivefi.<key>`` header records) are optional."""
    n, w = road.lanes, road.lane_width
    segs = [(seg.length, seg.curvature) for seg in road.segments]
    segs[0] = (segs[0][0] + lead_in, segs[0][1])
    segs[-1] = (segs[-1][0] + tail, segs[-1][1])
    # start pose: the first segment run backwards by lead_in (exactly how RoadGeometry extends it)
    x, y, th = (float(v) for v in _advance(0.0, 0.0, 0.0, segs[0][1], -lead_in))
    geoms, s = [], 0.0
    for ln, k in segs:
        shape = "<line/>" if k == 0 else f'<arc curvature="{_num(k)}"/>'
        geoms.append(
            f'      <geometry s="{_num(s)}" x="{_num(x)}" y="{_num(y)}" hdg="{_num(th)}" '
            f'length="{_num(ln)}">{shape}</geometry>'
        )
        x, y, th = (float(v) for v in _advance(x, y, th, k, ln))
        s += ln
    total = s

    def lane(lane_id: int, kind: str, mark: str | None) -> str:
        rm = (
            f'<roadMark sOffset="0" type="{mark}" weight="standard" color="standard" width="0.15"/>'
            if mark
            else ""
        )
        width = shoulder if kind == "shoulder" else w
        return (
            f'          <lane id="{lane_id}" type="{kind}" level="false"><link/>'
            f'<width sOffset="0" a="{_num(width)}" b="0" c="0" d="0"/>{rm}</lane>'
        )

    right = [lane(-j, "driving", "broken" if j < n else "solid") for j in range(1, n + 1)]
    right.append(lane(-(n + 1), "shoulder", None))
    xodr = "\n".join(
        [
            '<?xml version="1.0" standalone="yes"?>',
            "<OpenDRIVE>",
            f'  <header revMajor="1" revMinor="4" name="{escape(name)}" version="1.00" '
            'north="0" south="0" east="0" west="0" vendor="DriveFI">',
            f"    <geoReference><![CDATA[{GEO_REFERENCE}]]></geoReference>",
            *(
                f'    <userData code="drivefi.{escape(k)}" value="{_num(v)}"/>'
                for k, v in (user_data or {}).items()
            ),
            "  </header>",
            f'  <road name="{escape(name)}" length="{_num(total)}" id="{ROAD_ID}" junction="-1">',
            "    <link/>",
            *(
                ['    <type s="0" type="motorway"/>']
                if speed_limit is None
                else [
                    '    <type s="0" type="motorway">',
                    f'      <speed max="{_num(speed_limit)}" unit="m/s"/>',
                    "    </type>",
                ]
            ),
            "    <planView>",
            *geoms,
            "    </planView>",
            "    <elevationProfile/>",
            "    <lateralProfile/>",
            "    <lanes>",
            f'      <laneOffset s="0" a="{_num(n * w)}" b="0" c="0" d="0"/>',
            '      <laneSection s="0">',
            "        <left>",
            lane(1, "shoulder", None),
            "        </left>",
            "        <center>",
            '          <lane id="0" type="none" level="false"><link/>'
            '<roadMark sOffset="0" type="solid" weight="standard" color="standard" width="0.15"/></lane>',
            "        </center>",
            "        <right>",
            *right,
            "        </right>",
            "      </laneSection>",
            "    </lanes>",
            "  </road>",
            "</OpenDRIVE>",
            "",
        ]
    )
    return OpenDrive(xodr, ROAD_ID, n, w, float(lead_in), total)


def scenario_opendrive(scenario: Scenario) -> OpenDrive:
    """The OpenDRIVE the CARLA bridge generates for a scenario: its road, with the cruise speed as
    the speed limit and the ego's set speed and size as header user data."""
    e = scenario.ego
    vp = e.vehicle
    return write_opendrive(
        scenario.road,
        name=scenario.name,
        speed_limit=e.cruise_speed,
        user_data={
            "set_speed": e.cruise_speed,
            "ego_length": vp.length,
            "ego_width": vp.width,
            "ego_wheelbase": vp.wheelbase,
        },
    )


def opendrive_user_data(xodr: str) -> dict[str, float]:
    """The ``drivefi.*`` user-data records of an OpenDRIVE document's header, by key."""
    import xml.etree.ElementTree as ET

    header = ET.fromstring(xodr.encode()).find("header")
    out = {}
    for ud in header.findall("userData") if header is not None else []:
        code = ud.get("code", "")
        if code.startswith("drivefi."):
            out[code[len("drivefi.") :]] = float(ud.get("value", "nan"))
    return out


# -- coordinates --------------------------------------------------------------------------------
def to_carla(x: float, y: float, theta: float, z: float = 0.0):
    """A scenario pose (right-handed, radians) as a ``carla.Transform``."""
    import carla

    return carla.Transform(
        carla.Location(x=float(x), y=float(-y), z=float(z)),
        carla.Rotation(pitch=0.0, yaw=float(-math.degrees(theta)), roll=0.0),
    )


def from_carla(transform) -> tuple[float, float, float]:
    """(x, y, theta) of a ``carla.Transform`` in the scenario's right-handed frame."""
    loc, rot = transform.location, transform.rotation
    return float(loc.x), float(-loc.y), float(-math.radians(rot.yaw))
