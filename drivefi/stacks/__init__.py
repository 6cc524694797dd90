"""The stack under test: one interface for the reference ADS and a user's agent.

``--agent reference`` (the default) is the bundled reference ADS; ``--agent FILE.py[:CLASS]`` is a
Leaderboard-style agent (:class:`drivefi.stacks.agent.adapter.AgentStack`). Both meet :class:`drivefi.core.Stack`, which
the one closed loop of :mod:`drivefi.run.simulate` drives on every bridge, and nothing ever swaps one
for the other: the stack's identity (:func:`stack_identity`) goes into trace metadata and campaign
settings, so a model or a resumed campaign cannot mix stacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drivefi.core import InjectionPoint, Stack
from drivefi.world.scenario import Scenario

REFERENCE = "reference"
# seconds one step of an agent may take before its run ends as a stack failure (--agent-timeout):
# far above any real-time stack's step, far below a hung campaign
AGENT_TIMEOUT = 10.0


def is_reference(spec: str | None) -> bool:
    return spec is None or str(spec).strip() in ("", REFERENCE)


@dataclass(frozen=True)
class StackSpec:
    """Which stack is under test, resolved once (CLI or API) and passed down (picklable).

    ``agent``: a Leaderboard-style agent ``FILE.py[:CLASS]`` with its config file ``conf``
    (passed to ``setup``); ``None``: the bundled reference ADS. Everything a caller needs to know
    about the stack is asked of this value, so no caller ever tests which stack it is.
    """

    agent: str | None = None
    conf: str | None = None
    timeout: float | None = AGENT_TIMEOUT  # seconds one run_step may take (None: no watchdog)

    @classmethod
    def of(
        cls, spec: str | StackSpec | None = None, conf: str | None = None, timeout=AGENT_TIMEOUT
    ) -> StackSpec:
        """From ``--agent`` (``None``, ``"reference"`` or ``FILE.py[:CLASS]``)."""
        if isinstance(spec, StackSpec):
            return spec
        return cls(None if is_reference(spec) else str(spec), conf or None, timeout)

    def load(self, scenario: Scenario, seed: int | None = None, bridge=None) -> Stack:
        """The stack for a scenario. Pass the CARLA ``bridge`` for runs on CARLA (the agent's real
        sensors are spawned on its ego); an agent file that is missing, does not import or lacks
        the class is an ``InputError``. An agent set up by :meth:`points` in this process is the
        one the first stack takes over (an agent file is set up once per process)."""
        if self.agent is None:
            from drivefi.stacks.reference import ReferenceADS

            return ReferenceADS(scenario, seed)
        from drivefi.stacks.agent.adapter import AgentStack

        # an agent on CARLA is set up for its server (host, port): never a prototype set up without
        proto = None if hasattr(bridge, "request_sensors") else _PROTOTYPES.pop(self, None)
        stack = AgentStack(
            self.agent, scenario, seed, self.conf, bridge, prototype=proto, timeout=self.timeout
        )
        _POINTS.setdefault(self, list(stack.points))
        return stack

    def points(self) -> list[InjectionPoint]:
        """The stack's injection points: the reference ADS's, or an agent's standard points plus
        every point it declares at import or in ``setup`` (set up once per process to find out)."""
        if self.agent is None:
            from drivefi.stacks.reference import INJECTION_POINTS

            return list(INJECTION_POINTS)
        if self not in _POINTS:
            from drivefi.stacks.agent.loader import (
                AGENT_POINTS,
                declared_points,
                instantiate,
                load_agent_class,
            )

            cls, names = load_agent_class(self.agent)
            agent, more = instantiate(cls, self.conf or "")
            _PROTOTYPES[self] = (agent, more)
            _POINTS[self] = AGENT_POINTS + declared_points(names | more)
        return list(_POINTS[self])

    @property
    def identity(self) -> str:
        """``"reference"``, or ``"FILE:CLASS sha256=<hex>"`` of the agent file (absolute path):
        what traces, models and campaigns record, so that nothing mixes two stacks."""
        if self.agent is None:
            return REFERENCE
        from drivefi.stacks.agent.loader import file_hash, load_agent_class, parse_agent_spec

        path, _ = parse_agent_spec(self.agent)
        cls = load_agent_class(self.agent)[0].__name__
        return f"{path.resolve()}:{cls} sha256={file_hash(path)}"

    @property
    def absolute(self) -> str | None:
        """``agent`` with its file's absolute path (what a stored campaign keeps, to run it again
        from anywhere)."""
        if self.agent is None:
            return None
        from drivefi.stacks.agent.loader import parse_agent_spec

        path, cls = parse_agent_spec(self.agent)
        return f"{path.resolve()}:{cls}" if cls else str(path.resolve())

    @property
    def label(self) -> str:
        """The stack as messages name it."""
        return "the reference ADS" if self.agent is None else f"agent {self.agent}"

    @property
    def replayable(self) -> bool:
        """A stored fault of this stack re-runs exactly later without its trace: its code is
        part of DriveFI's version (an agent file may change after its campaign)."""
        return self.agent is None

    @property
    def has_oracle(self) -> bool:
        """A white-box replica of this stack exists (``--structure twin``), as a named oracle."""
        return self.agent is None

    @property
    def structure_name(self) -> str:
        """The name of the stack's own structure file in ``models/`` (if any) and of its derived
        structure."""
        return REFERENCE if self.agent is None else self.agent

    @property
    def own_structure(self) -> Path | None:
        """The stack's own structure file in ``models/`` (a user's copy of a derived one lives
        wherever ``--structure`` names it)."""
        if self.agent is not None:
            return None
        from drivefi.util.resources import bundled_dir

        path = bundled_dir("models") / f"{REFERENCE}.yaml"
        return path if path.is_file() else None


def stored_stack(identity: str, agent: str | None, conf: str | None = None) -> StackSpec:
    """The stack a stored campaign ran (its ``identity`` and ``--agent``), to run it again: the
    reference ADS, or that agent file if its content is still what it was (its SHA-256);
    ``InputError`` naming both hashes otherwise. Reads the file's bytes, imports nothing."""
    from drivefi.errors import InputError

    if identity == REFERENCE:
        return StackSpec()
    head, _, digest = identity.rpartition(" sha256=")
    path = Path(head.rsplit(":", 1)[0])
    if agent is None or not path.is_file():
        raise InputError(f"the campaign's stack {identity} is not here: its agent file is missing")
    from drivefi.stacks.agent.loader import file_hash

    now = file_hash(path)
    if now != digest:
        raise InputError(
            f"the campaign tested {head} with sha256={digest}; the file has changed since "
            f"(sha256={now}): re-running it would test another stack"
        )
    return StackSpec.of(agent, conf)


_POINTS: dict[StackSpec, list[InjectionPoint]] = {}
_PROTOTYPES: dict[StackSpec, tuple] = {}


def load_stack(
    spec: str | None, scenario: Scenario, seed: int | None = None, bridge=None, conf=None
) -> Stack:
    """The stack named by ``spec`` for a scenario (see :meth:`StackSpec.load`)."""
    return StackSpec.of(spec, conf).load(scenario, seed, bridge)


def stack_points(spec: str | None, conf: str | None = None) -> list[InjectionPoint]:
    """The injection points of the stack named by ``spec`` (see :meth:`StackSpec.points`)."""
    return StackSpec.of(spec, conf).points()


def stack_identity(spec: str | None) -> str:
    """The identity of the stack named by ``spec`` (see :attr:`StackSpec.identity`)."""
    return StackSpec.of(spec).identity


def identity_of(stack) -> str:
    """The identity of a loaded stack (see :attr:`StackSpec.identity`)."""
    return stack_identity(getattr(stack, "spec", None))


def stack_errors(stack) -> dict[int, tuple[int, str]]:
    """Runs whose stack failed, as ``{run: (step, message)}`` (the reference ADS never fails)."""
    return dict(getattr(stack, "errors", None) or {})


def describe_points(points: list[InjectionPoint]) -> list[dict]:
    """One dict per point (name, lo, hi, unit, module, doc), as ``drivefi points`` lists them."""
    return [
        {"name": p.name, "lo": p.lo, "hi": p.hi, "unit": p.unit, "module": p.module, "doc": p.doc}
        for p in points
    ]
