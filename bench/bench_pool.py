"""Executors compared on this machine.

1. Embedded campaign, faulty runs per second: the same plan run with the local executor (a pool of
   ``--workers`` processes) and with Ray (a local, loopback-only Ray with the same number of CPUs);
   both runs' outcomes are checked equal.
2. A pool of fake CARLA servers (:mod:`drivefi_fakes.server_pool`, each tick paced
   ``--tick-ms`` like a real server's synchronous step) with 1, 2 and 4 servers, one Ray actor per
   server: faulty runs per second.

    python bench/bench_pool.py [--workers 2] [--faults 2000] [--carla-faults 24] [--tick-ms 20]

Ray's start-up (~10 s) is not counted in the rates; each campaign's own wall time is.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from drivefi.bridges.carla.simulator import CarlaSimulator
from drivefi.campaign.carla_pool import CarlaPoolExecutor, Server
from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.ray_executor import RayExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.campaign.store import ResultsStore
from drivefi.faults.plan import random_plan
from drivefi.run.testbed import Testbed
from drivefi.world.scenario import load_scenario

# the fakes live with the tests (tests/drivefi_fakes); the pool's worker processes inherit the path
FAKES = str(Path(__file__).resolve().parent.parent / "tests")
sys.path.insert(0, FAKES)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (FAKES, os.environ.get("PYTHONPATH")) if p)
from drivefi_fakes.server_pool import FakeServers  # noqa: E402


def outcomes(db: Path):
    store = ResultsStore(db)
    try:
        return store.outcomes().drop(columns=["campaign"]).sort_values("idx").reset_index(drop=True)
    finally:
        store.close()


def embedded(sc, args, out: Path, ray_ex: RayExecutor, start_s: float) -> None:
    plan = random_plan(sc, "m-random", args.faults, 5, seed=11)
    print(f"embedded campaign: lead_brake, {args.faults} m-random faults, {args.workers} workers")
    local = run_campaign(sc, plan, out / "local.db", LocalExecutor(args.workers), progress=False)
    print(f"  local executor  {local.runs_per_s:8.1f} runs/s  ({local.wall_s:.1f} s)")
    ray = run_campaign(sc, plan, out / "ray.db", ray_ex, progress=False)
    print(f"  ray executor    {ray.runs_per_s:8.1f} runs/s  ({ray.wall_s:.1f} s; Ray start-up "
          f"{start_s:.1f} s not counted)")  # fmt: skip
    same = outcomes(out / "local.db").equals(outcomes(out / "ray.db"))
    print(f"  outcomes equal: {same}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--faults", type=int, default=2000)
    ap.add_argument("--carla-faults", type=int, default=24)
    ap.add_argument("--carla-duration", type=float, default=4.0, help="scenario seconds (CARLA)")
    ap.add_argument("--tick-ms", type=float, default=20.0)
    ap.add_argument("--servers", default="1,2,4")
    ap.add_argument("--skip-embedded", action="store_true", help="only the CARLA pool")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="drivefi-bench-pool-"))

    sc = load_scenario("lead_brake")
    ray_ex = RayExecutor(args.workers)
    t0 = time.perf_counter()
    ray_ex.start()
    start_s = time.perf_counter() - t0
    try:
        if not args.skip_embedded:
            embedded(sc, args, out, ray_ex, start_s)

        csc = sc.model_copy(update={"duration": args.carla_duration})
        cplan = random_plan(csc, "m-random", args.carla_faults, 5, seed=12)
        print(f"\nfake CARLA pool: {args.carla_faults} faults of {csc.steps} steps, "
              f"tick paced {args.tick_ms:g} ms")  # fmt: skip
        base = None
        for n in (int(x) for x in args.servers.split(",")):
            fakes = FakeServers(csc.model_dump_json(), str(out / f"servers{n}"),
                                tick_s=args.tick_ms / 1000)  # fmt: skip
            pool = CarlaPoolExecutor([Server("127.0.0.1", 2000 + 2 * i) for i in range(n)])
            try:
                s = run_campaign(csc, cplan, out / f"pool{n}.db", pool, progress=False,
                                 testbed=Testbed(CarlaSimulator({"timeout": 10.0, "client_factory": fakes})))  # fmt: skip
            finally:
                pool.close()
            base = base or s.runs_per_s
            print(f"  {n} server(s)    {s.runs_per_s:8.2f} runs/s  ({s.wall_s:.1f} s, "
                  f"x{s.runs_per_s / base:.2f})")  # fmt: skip
    finally:
        ray_ex.close()


if __name__ == "__main__":
    main()
