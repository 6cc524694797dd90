"""Leaderboard sensor specs as CARLA blueprints, and CARLA sensor data as the Leaderboard hands it on.

An agent's ``sensors()`` lists dicts (``type``, ``id``, pose ``x y z roll pitch yaw`` and per-type
options). The Leaderboard does not pass a spec's keys through to the blueprint: it translates them,
and fixes some attributes for every agent. DriveFI does the same, so an agent sees on DriveFI the
data it was trained on:

=========================  =====================================================================
``sensor.camera.*``        ``width``/``height``/``fov`` -> ``image_size_x``/``image_size_y``/``fov``;
                           data: ``(height, width, 4)`` uint8 BGRA
``sensor.lidar.ray_cast``  range 85 m, 10 Hz rotation, 64 channels, fov +10/-30 deg, 600k points/s,
                           the Leaderboard's attenuation and drop-off; data: ``(N, 4)`` float32
                           x, y, z, intensity
``sensor.lidar.ray_cast_semantic``  the same geometry (no drop-off: it has none); data: a
                           structured ``(N,)`` array x, y, z, cos_inc_angle (float32),
                           object_idx, object_tag (uint32), CARLA's 24-byte point layout
``sensor.other.radar``     ``horizontal_fov``/``vertical_fov`` from the spec, 1500 points/s,
                           range 100 m; data: ``(N, 4)`` float32 depth, altitude, azimuth,
                           velocity (CARLA's velocity, azimuth, altitude, depth, reversed)
``sensor.other.gnss``      noise 5e-6 deg std on lat/lon/alt, no bias, no rotation; data:
                           ``[lat, lon, alt]`` float64
``sensor.other.imu``       accelerometer noise 0.001/0.001/0.015, gyro 0.001; data:
                           ``[ax, ay, az, gx, gy, gz, compass]`` float64
=========================  =====================================================================

Other sensor types get the spec's keys that name a blueprint attribute, and their data as CARLA
delivers it.
"""

from __future__ import annotations

import numpy as np

POSE_KEYS = ("x", "y", "z", "roll", "pitch", "yaw")
_NOT_ATTRIBUTES = {"type", "id", "reading_frequency", *POSE_KEYS}

LIDAR = {
    "range": 85,
    "rotation_frequency": 10,
    "channels": 64,
    "upper_fov": 10,
    "lower_fov": -30,
    "points_per_second": 600000,
    "atmosphere_attenuation_rate": 0.004,
}
LIDAR_DROPOFF = {
    "dropoff_general_rate": 0.45,
    "dropoff_intensity_limit": 0.8,
    "dropoff_zero_intensity": 0.4,
}
RADAR = {"points_per_second": 1500, "range": 100}
GNSS = {
    "noise_alt_stddev": 0.000005,
    "noise_lat_stddev": 0.000005,
    "noise_lon_stddev": 0.000005,
    "noise_alt_bias": 0.0,
    "noise_lat_bias": 0.0,
    "noise_lon_bias": 0.0,
}
IMU = {
    "noise_accel_stddev_x": 0.001,
    "noise_accel_stddev_y": 0.001,
    "noise_accel_stddev_z": 0.015,
    "noise_gyro_stddev_x": 0.001,
    "noise_gyro_stddev_y": 0.001,
    "noise_gyro_stddev_z": 0.001,
}
SEMANTIC_POINT = np.dtype(
    [
        ("x", "<f4"),
        ("y", "<f4"),
        ("z", "<f4"),
        ("cos_inc_angle", "<f4"),
        ("object_idx", "<u4"),
        ("object_tag", "<u4"),
    ]
)


def blueprint_attributes(spec: dict) -> dict[str, str]:
    """The blueprint attributes the Leaderboard sets for sensor ``spec`` (values as strings)."""
    t = spec["type"]
    if t.startswith("sensor.camera."):
        out = {}
        for key, attr in (("width", "image_size_x"), ("height", "image_size_y"), ("fov", "fov")):
            if key in spec:
                out[attr] = spec[key]
    elif t == "sensor.lidar.ray_cast":
        out = {**LIDAR, **LIDAR_DROPOFF}
    elif t == "sensor.lidar.ray_cast_semantic":
        out = {k: v for k, v in LIDAR.items() if k != "atmosphere_attenuation_rate"}
    elif t == "sensor.other.radar":
        out = {k: spec[k] for k in ("horizontal_fov", "vertical_fov") if k in spec} | RADAR
    elif t == "sensor.other.gnss":
        out = dict(GNSS)
    elif t == "sensor.other.imu":
        out = dict(IMU)
    else:
        out = {k: v for k, v in spec.items() if k not in _NOT_ATTRIBUTES}
    return {str(k): _text(v) for k, v in out.items()}


def _text(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def sensor_pose(spec: dict) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """((x, y, z), (pitch, yaw, roll)) of the sensor on the ego, in CARLA's frame; GNSS is
    mounted unrotated, as the Leaderboard mounts it."""
    loc = tuple(float(spec.get(k, 0.0)) for k in ("x", "y", "z"))
    if spec["type"] == "sensor.other.gnss":
        return loc, (0.0, 0.0, 0.0)
    return loc, tuple(float(spec.get(k, 0.0)) for k in ("pitch", "yaw", "roll"))


def to_agent_data(spec: dict, data):
    """CARLA sensor ``data`` for sensor ``spec`` as the Leaderboard hands it to the agent."""
    t = spec["type"]
    if t.startswith("sensor.camera."):
        return _buffer(data, np.uint8).reshape(data.height, data.width, 4).copy()
    if t == "sensor.lidar.ray_cast":
        return _buffer(data, np.float32).reshape(-1, 4).copy()
    if t == "sensor.lidar.ray_cast_semantic":
        return np.frombuffer(bytes(data.raw_data), dtype=SEMANTIC_POINT).copy()
    if t == "sensor.other.radar":
        return np.flip(_buffer(data, np.float32).reshape(-1, 4), 1).copy()
    if t == "sensor.other.gnss":
        return np.array([data.latitude, data.longitude, data.altitude], dtype=np.float64)
    if t == "sensor.other.imu":
        a, g = data.accelerometer, data.gyroscope
        return np.array([a.x, a.y, a.z, g.x, g.y, g.z, data.compass], dtype=np.float64)
    return data


def _buffer(data, dtype) -> np.ndarray:
    return np.frombuffer(bytes(data.raw_data), dtype=dtype)
