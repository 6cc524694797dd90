"""The stack under test: one interface for the reference ADS and a user's agent.

``--agent reference`` (the default) is the bundled reference ADS; ``--agent FILE.py[:CLASS]`` is a
Leaderboard-style agent (:class:`drivefi.stacks.agent.adapter.AgentStack`). Both meet :class:`drivefi.core.Stack`, which
the one closed loop of :mod:`drivefi.run.simulate` drives on every bridge, and nothing ever swaps one
for the other: the stack's identity (:func:`stack_identity`) goes into trace metadata and campaign
settings, so a model or a resumed campaign cannot mix stacks.
"""

from __future__ import annotations

from drivefi.core import InjectionPoint, Stack
from drivefi.world.scenario import Scenario

REFERENCE = "reference"


def is_reference(spec: str | None) -> bool:
    return spec is None or str(spec).strip() in ("", REFERENCE)


def load_stack(
    spec: str | None,
    scenario: Scenario,
    seed: int | None = None,
    bridge=None,
    conf: str | None = None,
) -> Stack:
    """The stack named by ``spec`` (``None``/``"reference"`` or ``FILE.py[:CLASS]``) for a scenario.

    Pass the CARLA ``bridge`` for runs on CARLA (the agent's real sensors are spawned on its ego);
    an agent file that is missing, does not import or lacks the class is an ``InputError``."""
    if is_reference(spec):
        from drivefi.stacks.reference import ReferenceADS

        return ReferenceADS(scenario, seed)
    from drivefi.stacks.agent.adapter import AgentStack

    return AgentStack(str(spec), scenario, seed, conf=conf, bridge=bridge)


def stack_points(spec: str | None, conf: str | None = None) -> list[InjectionPoint]:
    """The injection points of a stack: the reference ADS's, or an agent's standard points plus
    every point it declares at import or in ``setup`` (the agent is set up once to find out)."""
    if is_reference(spec):
        from drivefi.stacks.reference import INJECTION_POINTS

        return list(INJECTION_POINTS)
    from drivefi.stacks.agent.loader import (
        AGENT_POINTS,
        declared_points,
        instantiate,
        load_agent_class,
    )

    cls, names = load_agent_class(str(spec))
    agent, more = instantiate(cls, conf or "")
    destroy = getattr(agent, "destroy", None)
    if callable(destroy):
        destroy()
    return AGENT_POINTS + declared_points(names | more)


def stack_identity(spec: str | None) -> str:
    """``"reference"``, or ``"FILE:CLASS sha256=<hex>"`` of the agent file (absolute path)."""
    if is_reference(spec):
        return REFERENCE
    from drivefi.stacks.agent.loader import file_hash, load_agent_class, parse_agent_spec

    path, _ = parse_agent_spec(str(spec))
    cls = load_agent_class(str(spec))[0].__name__
    return f"{path.resolve()}:{cls} sha256={file_hash(path)}"


def identity_of(stack) -> str:
    """The identity of a loaded stack (see :func:`stack_identity`)."""
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
