"""Example agents (examples/agents/): cost of one ``run_step`` and each golden run's margins.

    python bench/bench_agent_steps.py [--scenarios lead_brake,highway]

For every example agent and scenario: the golden run on the embedded simulator (min delta_lon and
delta_lat, collision or departure), then the agent's ``run_step`` alone, replayed on the inputs it
received in that run (best of 3 passes, microseconds per call), and the whole closed loop at
N = 1 (bridge, agent wrapper, agent; no recorders) next to the reference ADS's.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from drivefi.run.simulate import Simulation, TraceRecorder
from drivefi.stacks.agent.adapter import AgentStack
from drivefi.world.scenario import bundled_names, load_scenario

AGENTS = sorted((Path(__file__).resolve().parent.parent / "examples" / "agents").glob("[!_]*.py"))


def loop_us(scenario, spec: str | None) -> float:
    """Microseconds per step of the closed loop at N = 1 (best of 3)."""
    best = float("inf")
    for _ in range(3):
        sim = Simulation(scenario, ads=AgentStack(spec, scenario) if spec else None)
        t0 = time.perf_counter()
        sim.run(1)
        best = min(best, time.perf_counter() - t0)
    return best / scenario.steps * 1e6


def agent_row(spec: str, scenario) -> dict:
    ads = AgentStack(spec, scenario)
    fresh = copy.deepcopy(AgentStack(spec, scenario).agent)
    inputs, step = [], ads.agent.run_step

    def spy(data, t):
        inputs.append((copy.deepcopy(data), t))
        return step(data, t)

    ads.agent.run_step = spy
    sim = Simulation(scenario, ads=ads)
    rec = TraceRecorder(1, sim.steps, sim.points)
    sim.run(1, recorders=[rec])
    c = {k: v[0] for k, v in rec.cols.items()}
    best = float("inf")
    for _ in range(3):
        agent = copy.deepcopy(fresh)
        t0 = time.perf_counter()
        for data, t in inputs:
            agent.run_step(data, t)
        best = min(best, (time.perf_counter() - t0) / len(inputs))
    return {
        "dlon": float(c["delta_lon"].min()),
        "dlat": float(c["delta_lat"].min()),
        "accident": bool(c["collision"].any() or c["departure"].any()),
        "step_us": best * 1e6,
        "loop_us": loop_us(scenario, spec),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(bundled_names()))
    args = ap.parse_args()
    names = [s for s in args.scenarios.split(",") if s]
    print(
        f"{'agent':10s} {'scenario':20s} {'min dlon':>9s} {'min dlat':>9s} {'accident':>9s}"
        f" {'run_step us':>12s} {'loop us/step':>13s} {'reference loop':>15s}"
    )
    for name in names:
        sc = load_scenario(name)
        ref = loop_us(sc, None)
        for path in AGENTS:
            r = agent_row(str(path), sc)
            print(
                f"{path.stem:10s} {name:20s} {r['dlon']:9.2f} {r['dlat']:9.3f} {r['accident']!s:>9s}"
                f" {r['step_us']:12.0f} {r['loop_us']:13.0f} {ref:15.0f}"
            )


if __name__ == "__main__":
    main()
