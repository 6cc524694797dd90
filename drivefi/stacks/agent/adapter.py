"""A user's Leaderboard-style agent as the stack under test: :class:`AgentStack`.

The adapter meets the same stack interface as the reference ADS (``points``, ``reset(n)``,
``step(obs) -> Actuation``, ``injector``, ``state``/``restore``), so the one closed loop of
:mod:`drivefi.run.simulate` drives it on every bridge. It holds one agent instance per run: a batch
of N runs on the embedded simulator advances in lock-step, each step calling every live run's
``run_step`` with that run's sensor data. Instances are deep copies of one prototype set up once
(``setup`` runs once per stack, not per run); faulty runs start from deep copies the golden run
took at their fault's step (:mod:`drivefi.stacks.agent.snapshot`).

Injection points: ``control.throttle``, ``control.brake``, ``control.steer`` (left positive,
= ``-VehicleControl.steer``), ``localization.speed`` (the speed the agent receives) and every
point the agent declares with :func:`drivefi.declare` at import or in ``setup``.

An agent that fails in ``run_step`` fails only its run (a stack failure, the run's outcome): it
raised, it took longer than ``timeout`` seconds (a watchdog interrupts it), or it returned
something that is not a control or a control with a non-finite value. ``errors[i]`` holds the
step and what happened, naming the agent's file and line; the run's commands from then on are NaN
(the vehicle interface holds the last valid command) and the batch goes on. An agent's prints go
to stderr, never to DriveFI's stdout (where ``--json`` writes).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from functools import cached_property
from itertools import chain, repeat

import numpy as np

from drivefi.core import Actuation, Injector, Observation
from drivefi.errors import DriveFIError, InputError
from drivefi.inject import _ACTIVE, _context
from drivefi.stacks.agent import carla_api
from drivefi.stacks.agent import snapshot as agent_copy
from drivefi.stacks.agent.equal import same_state
from drivefi.stacks.agent.inputs import (
    EMBEDDED_SENSORS,
    ego_constants,
    global_plan,
    gnss_rows,
    imu_rows,
    observation_rows,
    observation_version,
    opendrive_text,
    record,
)
from drivefi.stacks.agent.loader import (
    AGENT_POINTS,
    AgentError,
    declared_points,
    instantiate,
    load_agent_class,
    normalise_sensors,
    parse_agent_spec,
)
from drivefi.world.scenario import Scenario

log = logging.getLogger("drivefi.agent")


class AgentStack:
    """Stack interface around the agent ``spec`` (``FILE.py[:CLASS]``); see the module docstring.

    ``bridge``: pass the CARLA bridge the runs will use (its server provides the agent's real
    sensors and its own ego, world and map); without it the agent runs on the embedded simulator,
    where only pseudo-sensors exist (an agent asking for a camera is refused, naming it).
    """

    def __init__(
        self,
        spec: str,
        scenario: Scenario,
        seed: int | None = None,
        conf: str | None = None,
        bridge=None,
        injector: Injector | None = None,
        prototype: tuple | None = None,
        timeout: float | None = None,
    ):
        self.spec = str(spec)
        self.timeout = timeout  # seconds a run_step may take (None: no watchdog)
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.conf = conf or ""
        self.injector = injector or Injector()
        self.path, _ = parse_agent_spec(self.spec)
        self.cls, module_names = load_agent_class(self.spec)
        version = observation_version(self.cls, f"--agent {self.spec}")
        self.carla = bridge is not None and hasattr(bridge, "request_sensors")
        self.bridge = bridge
        cfg = getattr(bridge, "config", None)
        # ``prototype``: (agent, points declared in setup) of an agent already set up in this
        # process (:meth:`drivefi.stacks.StackSpec.points`), taken over instead of a second setup
        self.prototype, setup_names = prototype or instantiate(
            self.cls, self.conf, getattr(cfg, "host", "127.0.0.1"), getattr(cfg, "port", 2000)
        )
        self.user_points = declared_points(module_names | setup_names)
        self.points = AGENT_POINTS + self.user_points
        self._user_names = {p.name for p in self.user_points}
        self.sensors = normalise_sensors(self._call(self.prototype, "sensors"), self.name)
        self._check_sensors()
        self.hooks = callable(getattr(self.cls, "get_state", None)) and callable(
            getattr(self.cls, "set_state", None)
        )
        self.constants = ego_constants(scenario, version)
        self.copy_error: str | None = None
        self._xodr: tuple | None = None
        self.shared: dict = {}
        if not self.carla and hasattr(self.prototype, "set_global_plan"):
            self._call(self.prototype, "set_global_plan", *self._plan())
        agent_copy.register_carla_types()
        self.proto_copyable = True
        self._pristine = None  # a copy of the set-up agent, the source of every later run's
        self._handed_out = False  # the first run gets the set-up agent itself
        try:
            self._pristine = copy.deepcopy(self.prototype, dict(self.shared))
        except Exception as err:
            self.proto_copyable = False
            self.copy_error = f"{type(err).__name__}: {err}"
        if self.hooks:
            try:
                copy.deepcopy(self.prototype.get_state(), dict(self.shared))
                self.copy_error = None
            except Exception as err:
                self.copy_error = f"get_state(): {type(err).__name__}: {err}"
        self.agents: list = []
        self._destroyed = True
        self.worlds: list = []
        self.handles: list = []
        self.errors: dict[int, tuple[int, str]] = {}
        self.tracebacks: dict[int, str] = {}
        self.failed = np.zeros(0, bool)
        self.idle = np.zeros(0, bool)
        self.obs: Observation | None = None
        self._unknown: set[str] = set()
        self._route: _RunInjector | None = None  # the injector of the step now running
        self._prov: list = []
        self._cols: tuple | None = None

    # -- identity and set-up ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.cls.__name__

    @property
    def agent(self):
        """The agent of run 0 (before the first run: the set-up agent that run will use)."""
        return self.agents[0] if self.agents else self.prototype

    @agent.setter
    def agent(self, value) -> None:
        if self.agents:
            self.agents[0] = value
        else:
            self.prototype = value

    @property
    def map(self):
        """The ``carla.Map`` the agent sees (the server's on CARLA, the generated road's here)."""
        if self.carla:
            return self.bridge.map
        return self._embedded_map

    @cached_property
    def _embedded_map(self):
        from drivefi.stacks.agent.inputs import carla_map

        return carla_map(self.scenario, self.xodr)

    @property
    def xodr(self) -> str:
        """The OpenDRIVE text of the map, rendered once (per scenario, or per CARLA map)."""
        key = id(self.bridge.map) if self.carla else None
        if self._xodr is None or self._xodr[0] != key:
            text = self.bridge.xodr if self.carla else opendrive_text(self.scenario)
            self._xodr = (key, text)
        return self._xodr[1]

    def _check_sensors(self) -> None:
        real = [s for s in self.sensors if s["type"] not in EMBEDDED_SENSORS]
        if self.carla:
            self.bridge.request_sensors(self.sensors)
        elif real:
            what = ", ".join(f"{s['type']} ({s['id']!r})" for s in real)
            raise InputError(
                f"--agent {self.spec}: {self.name} needs {what}, which only a CARLA server "
                "provides: use --sim carla"
            )

    def bind(self, bridge) -> None:
        """The bridge this stack's runs use (the closed loop calls this)."""
        if self.carla and bridge is not self.bridge:
            raise InputError(f"--agent {self.spec}: the agent was set up for another CARLA bridge")
        self.bridge = bridge

    def _call(self, agent, method: str, *args):
        try:
            return getattr(agent, method)(*args)
        except DriveFIError:
            raise
        except Exception as err:
            raise AgentError(
                f"--agent {self.spec}: {self.name}.{method} raised {type(err).__name__}: {err}"
            ) from err

    # -- runs ---------------------------------------------------------------------------------
    def _plan(self):
        """The route as global plans; their entries are shared by every copy (read-only)."""
        if self.carla:
            plan = global_plan(self.scenario, self.bridge.map, self.bridge.route)
        else:
            plan = global_plan(self.scenario, self.map)
        for entries in plan:
            for entry in entries:
                self.shared[id(entry)] = entry
                self.shared[id(entry[0])] = entry[0]
        return plan

    def _fresh(self):
        """A new agent as after ``setup``: a copy of the prototype, or a new instance."""
        if not self._handed_out:
            self._handed_out = True
            return self.prototype
        if self.proto_copyable:
            return copy.deepcopy(self._pristine, dict(self.shared))
        agent, _ = instantiate(self.cls, self.conf)
        if not self.carla and hasattr(agent, "set_global_plan"):
            self._call(agent, "set_global_plan", *self._plan())
        return agent

    def _standins(self, n: int) -> None:
        if self.carla:
            self.worlds, self.handles = [None] * n, [()] * n
            return
        self.worlds = [carla_api.World(self, i) for i in range(n)]
        self.handles = [(w, w.hero, *w._others) for w in self.worlds]
        cmap = self.map
        self._prov = [(w.hero, w, cmap) for w in self.worlds]

    def reset(self, n: int = 1) -> None:
        if self.carla and n != 1:
            raise ValueError("the CARLA bridge runs one run at a time (n=1)")
        self._destroy()
        self._standins(n)
        self.agents = [self._fresh() for _ in range(n)]
        self._destroyed = False
        if self.carla:
            for a in self.agents:
                if hasattr(a, "set_global_plan"):
                    self._call(a, "set_global_plan", *self._plan())
        self.errors, self.failed, self.idle = {}, np.zeros(n, bool), np.zeros(n, bool)
        self.tracebacks = {}

    @property
    def state(self) -> agent_copy.AgentState:
        """The live agents (``state.take(idx)`` deep-copies them: a snapshot)."""
        return agent_copy.AgentState(
            self.agents, self.handles, False, self.copy_error, self.hooks, self.shared
        )

    def snapshot(self) -> agent_copy.AgentState:
        return self.state.take(slice(None))

    def restore(self, state: agent_copy.AgentState) -> None:
        """Continue from a snapshot (copied again: a snapshot may be restored many times)."""
        if not state.copyable:
            raise ValueError(f"agent {self.name} cannot be copied ({state.error}); run from step 0")
        self._destroy()
        n = state.n
        self._standins(n)
        self.agents = [
            agent_copy.load(a, h, self.handles[i], self._fresh, state.hooks, state.shared)
            for i, (a, h) in enumerate(zip(state.agents, state.handles, strict=True))
        ]
        self._destroyed = False
        self.errors, self.failed, self.idle = {}, np.zeros(n, bool), np.zeros(n, bool)
        self.tracebacks = {}

    def same_as(
        self, rows: np.ndarray, steps: np.ndarray, golden: agent_copy.AgentState
    ) -> np.ndarray:
        """Per run in ``rows``, whether its agent is in the state ``golden`` (the golden run's
        snapshots, one per step) holds at its step in ``steps`` (:mod:`drivefi.run.rejoin`)."""
        out = np.zeros(len(rows), bool)
        for j, (i, k) in enumerate(zip(rows.tolist(), steps.tolist(), strict=True)):
            try:
                agent = self.agents[i].get_state() if golden.hooks else self.agents[i]
            except Exception:  # a get_state that fails here: the run simply goes on
                continue
            pairs = {id(h): id(g) for h, g in zip(self.handles[i], golden.handles[k], strict=True)}
            out[j] = same_state(agent, golden.agents[k], pairs)
        return out

    def park(self, rows: np.ndarray) -> None:
        """Stop stepping runs ``rows`` (they rejoined the golden run)."""
        self.idle[rows] = True

    @property
    def all_failed(self) -> bool:
        return bool(self.failed.size) and bool(self.failed.all())

    def close(self) -> None:
        """Call every agent's ``destroy`` (the agents stay readable until the next reset)."""
        self._destroy(keep=True)

    def _destroy(self, keep: bool = False) -> None:
        if not self._destroyed:
            for a in self.agents:
                if hasattr(a, "destroy"):
                    self._call(a, "destroy")
        self._destroyed = True
        if not keep:
            self.agents = []

    # -- the step -----------------------------------------------------------------------------
    def step(self, obs: Observation) -> Actuation:
        inj, k, n = self.injector, obs.k, obs.n
        self.obs = obs
        speed = inj.apply("localization.speed", obs.v, k)
        # runs past the scenario's end (a batch's later starters), failed runs and runs that
        # rejoined the golden run are not stepped
        live = k < self.scenario.steps
        if self.idle.any():
            live &= ~self.idle
        rows = np.arange(n) if live.all() else np.flatnonzero(live)
        inputs = self._inputs(obs, speed, rows)
        route = self._route = _RunInjector(inj, self._user_names, k, n, self._unknown)
        agents, vals = self.agents, []  # (throttle, brake, steer, hand brake) of each run stepped
        tok = _ACTIVE.set(_context(route, k))
        tok2 = carla_api._CURRENT.set(self._current)
        watch = _Watchdog(self.timeout)
        try:
            with watch, contextlib.redirect_stdout(_AGENT_OUTPUT), _exits_raise():
                for i, data, t in zip(rows.tolist(), inputs, obs.t[rows].tolist(), strict=True):
                    route.run, c = i, _UNSET
                    try:
                        watch.arm()
                        c = agents[i].run_step(data, t)
                        watch.disarm()
                        v = (float(c.throttle), float(c.brake), -float(c.steer),
                             1.0 if getattr(c, "hand_brake", False) else 0.0)  # fmt: skip
                    except (Exception, SystemExit, AgentTimeout) as err:
                        watch.disarm()
                        self._fail(i, int(k[i]), err, c)
                        v = _FAILED
                    else:
                        if not math.isfinite(v[0] + v[1] + v[2]):
                            self._fail(i, int(k[i]), None, c)
                            v = _FAILED
                    vals.append(v)
        finally:
            _ACTIVE.reset(tok)
            carla_api._CURRENT.reset(tok2)
        cmd = np.full((3, n), np.nan)
        if vals:
            # (one flat pass: numpy reads a list of tuples much more slowly)
            got = np.fromiter(chain.from_iterable(vals), float, 4 * len(vals)).reshape(-1, 4).T
            cmd[:, rows] = got[:3]
            cmd[1, rows[got[3] > 0]] = 1.0  # the hand brake brakes fully
        out = Actuation(
            inj.apply("control.throttle", cmd[0], k),
            inj.apply("control.brake", cmd[1], k),
            inj.apply("control.steer", cmd[2], k),
        )
        inj.seen.update(route.seen)
        return out

    def _current(self):
        """(hero, world, map) of the run stepping now (what CarlaDataProvider returns)."""
        if self.carla:
            b = self.bridge
            return (getattr(b, "hero", None), b.world, b.map)
        return self._prov[self._route.run]

    def _fail(self, i: int, k: int, err: BaseException | None, command=None) -> None:
        """Run ``i`` failed at step ``k``: ``err`` raised (or the ``command`` it returned is not
        a finite control); the message names what happened and the agent's file and line."""
        where = (_agent_line(err, self.path) if err is not None else None) or _defined_at(
            self.cls.run_step
        )
        if isinstance(err, AgentTimeout):
            msg = f"{self.name}.run_step timed out at step {k}: {err}"
        elif isinstance(err, SystemExit):
            how = "os._exit" if isinstance(err, _ProcessExit) else "sys.exit"
            msg = f"{self.name}.run_step called {how}({err.code!r}) at step {k}"
        elif command is not _UNSET and not _is_control(command):
            msg = (
                f"{self.name}.run_step returned {type(command).__name__} at step {k}; expected "
                "a carla.VehicleControl (throttle, brake, steer)"
            )
        elif err is None:
            msg = f"{self.name}.run_step returned a non-finite command at step {k}: {command}"
        else:
            msg = f"{self.name}.run_step raised {type(err).__name__} at step {k}: {err}"
        if where:
            msg += f" ({where})"
        self.errors[i] = (k, msg)
        if err is not None:  # the agent's own traceback, for --debug
            self.tracebacks[i] = "".join(traceback.format_exception(err))
        self.failed[i] = self.idle[i] = True
        if len(self.errors) == 1:
            log.info("agent run %d failed: %s", i, msg)

    def _inputs(self, obs: Observation, speed: np.ndarray, rows: np.ndarray) -> Iterator[dict]:
        """Each run's ``input_data``: ``{sensor id: (frame, data)}``, built as it is read (see
        :func:`drivefi.stacks.agent.inputs.observation_rows`)."""
        frames = [int(self.bridge.frame)] * len(rows) if self.carla else obs.k[rows].tolist()
        columns, real = [], None
        for s in self.sensors:
            t = s["type"]
            if t == "sensor.speedometer":
                data = map(_SPEED, speed[rows].tolist())
            elif t == "sensor.opendrive_map":
                data = map(_OPENDRIVE, repeat(self.xodr, len(rows)))
            elif t == "drivefi.observation":
                data = observation_rows(obs, speed, rows, self.constants)
            elif t == "sensor.other.gnss" and not self.carla:
                data = gnss_rows(obs, rows, self.map)
            elif t == "sensor.other.imu" and not self.carla:
                data = imu_rows(obs, rows, self.constants["wheelbase"])
            else:  # a real sensor (CARLA: one run)
                real = real if real is not None else real_sensor_data(self.bridge, self.sensors)
                columns.append([real[s["id"]]])
                continue
            columns.append(zip(frames, data, strict=True))
        if not columns:
            return ({} for _ in range(len(rows)))
        return map(record(tuple(s["id"] for s in self.sensors)), *columns)

    # -- what the stand-ins read (embedded) -------------------------------------------------------
    def _column(self, name: str) -> list:
        """This step's observation column as a list (built on first use, once per step)."""
        cols = self._cols
        if cols is None or cols[0] is not self.obs:
            cols = self._cols = (self.obs, {})
        col = cols[1].get(name)
        if col is None:
            o = self.obs
            if name == "yaw":
                col = (-np.degrees(o.theta)).tolist()
            elif name == "y":
                col = (-o.y).tolist()
            else:
                col = getattr(o, name).tolist()
            cols[1][name] = col
        return col

    def pose(self, run: int) -> tuple[float, float, float]:
        """(x, y, yaw [deg]) of run ``run`` in CARLA's frame."""
        c = self._column
        return c("x")[run], c("y")[run], c("yaw")[run]

    def value(self, name: str, run: int) -> float:
        return self._column(name)[run]

    def applied(self, run: int) -> tuple[float, float, float]:
        st = self.bridge.state
        return float(st.last_throttle[run]), float(st.last_brake[run]), float(st.last_steer[run])

    def actor_pose(self, run: int, i: int) -> tuple[float, float, float, float]:
        x, y, th, v = self.bridge.actor_poses(int(self.obs.k[run]))
        return float(x[i]), -float(y[i]), -math.degrees(float(th[i])), float(v[i])


def real_sensor_data(bridge, specs: list[dict]) -> dict:
    """The CARLA sensors' data of this frame, as the Leaderboard hands it to agents (the one
    place raw sensor data is converted: :func:`drivefi.stacks.agent.sensors.to_agent_data`)."""
    from drivefi.stacks.agent.sensors import to_agent_data

    by_id = {s["id"]: s for s in specs}
    return {
        sid: (f, to_agent_data(by_id[sid], d))
        for sid, (f, d) in bridge.sensor_data().items()
        if sid in by_id
    }


class _CappedStderr:
    """Where an agent's prints go: stderr (DriveFI's stdout carries ``--json``), at most
    ``cap`` characters a process, then one line saying the rest was dropped."""

    def __init__(self, cap: int = 1 << 20):
        self.cap, self.left = cap, cap

    def write(self, text: str) -> int:
        if self.left > 0:
            sys.stderr.write(text[: self.left])
            if len(text) >= self.left:
                sys.stderr.write(f"\n[the agent's output beyond {self.cap:,} characters dropped]\n")
            self.left -= len(text)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


_AGENT_OUTPUT = _CappedStderr()


class AgentTimeout(BaseException):
    """A run_step past its time-out (a BaseException: an agent's ``except Exception`` does not
    swallow it)."""


class _Watchdog:
    """Interrupts a run_step that takes longer than ``timeout`` seconds (a SIGALRM timer; in the
    main thread only, where signals are delivered: elsewhere it watches nothing)."""

    def __init__(self, timeout: float | None):
        self.timeout = timeout
        self.on = bool(timeout) and threading.current_thread() is threading.main_thread()
        self._old = None

    def __enter__(self) -> _Watchdog:
        if self.on:
            self._old = signal.signal(signal.SIGALRM, self._expired)
        return self

    def __exit__(self, *exc) -> None:
        if self.on:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)

    def _expired(self, signum, frame):
        raise AgentTimeout(f"no command after {self.timeout:g} s (--agent-timeout)")

    def arm(self) -> None:
        if self.on:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def disarm(self) -> None:
        if self.on:
            signal.setitimer(signal.ITIMER_REAL, 0)


class _ProcessExit(SystemExit):
    """An agent's ``os._exit`` during a step: its run ends, DriveFI's process goes on."""


def _raise_exit(code=0):
    raise _ProcessExit(code)


@contextlib.contextmanager
def _exits_raise():
    """While agents step, ``os._exit`` raises (as ``sys.exit`` does) instead of ending the
    process: an agent that exits fails its own run, not the campaign's."""
    real = os._exit
    os._exit = _raise_exit
    try:
        yield
    finally:
        os._exit = real


def _is_control(c) -> bool:
    return all(hasattr(c, f) for f in ("throttle", "brake", "steer"))


def _defined_at(fn) -> str | None:
    """``file:line`` where ``fn`` is defined (what returned a bad command)."""
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None


def _agent_line(err: BaseException, path) -> str | None:
    """``file:line`` of the deepest frame of the agent's own file in ``err``'s traceback."""
    mine = str(path.resolve())
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == mine]
    return f"{path}:{frames[-1].lineno}" if frames else None


_UNSET = object()  # run_step has not returned
_FAILED = (math.nan, math.nan, math.nan, 0.0)  # a failed run's commands: the interface holds
_SPEED, _OPENDRIVE = record(("speed",)), record(("opendrive",))  # pseudo-sensors' data


class _RunInjector:
    """The injector as ``drivefi.inject`` sees it inside one run's ``run_step``: a scalar of run
    ``run`` goes through the batch injector; points not declared before the run pass through
    (a fault plan cannot name them, and the trace has no column for them).

    This is the agent path's hot spot (every ``inject`` of every run and step, read directly by
    :func:`drivefi.inject.inject`): per declared point, ``points`` holds the list of the values
    the runs saw (turned into an array once, at the end of the step) and the set of runs whose
    fault is on there now (worked out once per step)."""

    def __init__(self, injector: Injector, names: set[str], k: np.ndarray, n: int, unknown: set):
        self.injector, self.k, self.n, self.unknown = injector, k, n, unknown
        self.run = 0
        rows = getattr(injector, "rows", None)
        if type(injector).corrupt is Injector.corrupt:  # no faults at all
            hot = dict.fromkeys(names, ())
        elif rows is not None and hasattr(injector, "names"):
            on = injector.active(k)
            hot = dict.fromkeys(names, ())
            for j, name in enumerate(injector.names):
                if name in names:
                    m = np.zeros(n, bool)
                    m[rows[j]] = True
                    hot[name] = set(np.flatnonzero(m & on).tolist())
        else:  # an injector of unknown make: ask it for every value
            hot = dict.fromkeys(names, _EVERY)
        self.points = {p: ([math.nan] * n, hot[p]) for p in names}

    @property
    def seen(self) -> dict[str, np.ndarray]:
        """Per declared point: the value each run saw this step (NaN for runs that did not use it)."""
        return {p: np.array(v, dtype=float) for p, (v, _) in self.points.items()}

    def corrupt(self, point: str, v: float) -> float:
        """Run ``run``'s value ``v`` at ``point`` as the batch injector corrupts it now."""
        full = np.zeros(self.n)
        full[self.run] = v
        return float(self.injector.corrupt(point, full, self.k)[self.run])

    def scalar(self, point: str, v: float) -> float:
        """Run ``run``'s value at ``point``, corrupted when its fault is on now (the general path
        of :func:`drivefi.inject.inject`)."""
        entry = self.points.get(point)
        if entry is None:
            if point not in self.unknown:
                self.unknown.add(point)
                log.warning(
                    "injection point %r was first used inside run_step; declare it at import "
                    "or in setup()",
                    point,
                )
            return v
        seen, hot = entry
        i = self.run
        out = self.corrupt(point, v) if i in hot else v
        seen[i] = out
        return out


class _Every:
    """Contains every run (the runs to ask an injector of unknown make about)."""

    def __contains__(self, run) -> bool:
        return True


_EVERY = _Every()
