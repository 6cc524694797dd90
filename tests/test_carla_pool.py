"""Campaigns on a pool of (fake) CARLA servers, one Ray actor per server: crash, hang, removal."""

from __future__ import annotations

import logging

import pytest
from drivefi_fakes.server_pool import FakeServers
from procs import outcomes

from drivefi.bridges.carla.simulator import CarlaSimulator
from drivefi.campaign.carla_pool import CarlaPoolExecutor, Server, parse_servers
from drivefi.campaign.executor import LocalExecutor
from drivefi.campaign.runner import run_campaign
from drivefi.errors import InputError
from drivefi.faults.plan import random_plan
from drivefi.run.testbed import Testbed
from drivefi.run.trace import read_trace
from drivefi.world.scenario import load_scenario

pytest.importorskip("carla")
pytest.importorskip("ray")

SC = load_scenario("lead_brake").model_copy(update={"duration": 2.0})
PORTS = (2000, 2002, 2004)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (slow to start); the pool executors reuse it."""
    from drivefi.campaign.ray_session import RaySession

    s = RaySession(num_cpus=3)
    s.start()
    yield s
    s.close()


def plan60():
    return random_plan(SC, "m-random", 60, 8, seed=3)


def test_parse_servers(tmp_path):
    assert parse_servers("a:2000, b:2002") == [Server("a", 2000), Server("b", 2002)]
    f = tmp_path / "servers.txt"
    f.write_text("# the farm\n10.0.0.1:2000\n10.0.0.2:2000  # gpu 1\n")
    assert parse_servers(f"@{f}") == [Server("10.0.0.1", 2000), Server("10.0.0.2", 2000)]
    assert parse_servers(str(f)) == parse_servers(f"@{f}")
    for bad, needle in (("a:x", "'a:x'"), ("a:2000,a:2000", "twice"), ("@/nope", "not found"),
                        (",", "no servers"), ("a:70000", "'a:70000'")):  # fmt: skip
        with pytest.raises(InputError, match=needle):
            parse_servers(bad)


@pytest.mark.slow
def test_pool_of_3_with_a_crash_and_a_hang_equals_one_server(ray_session, tmp_path, caplog):
    plan = plan60()
    script = ((2002, "crash", 4, 20), (2004, "hang", 3, 10))
    pool = FakeServers(SC.model_dump_json(), str(tmp_path / "pool"), script, hang_s=600.0)
    opts = {"timeout": 5.0, "client_factory": pool}
    ex = CarlaPoolExecutor([Server("127.0.0.1", p) for p in PORTS], restart_cmd=pool.restart_cmd(),
                           run_timeout=15.0)  # fmt: skip
    with caplog.at_level(logging.WARNING, "drivefi.campaign"):
        s = run_campaign(SC, plan, tmp_path / "pool.db", ex, progress=False,
                         testbed=Testbed(CarlaSimulator(opts)))  # fmt: skip
    status = {x["server"]: x for x in ex.status()}
    ex.close()
    assert s.done == 60 and s.error == 0 and s.ran_now == 60
    assert status["127.0.0.1:2002"]["restarts"] >= 1 and status["127.0.0.1:2004"]["restarts"] >= 1
    assert not any(x["removed"] for x in status.values())
    assert sum(x["ok"] for x in status.values()) == 60
    assert "127.0.0.1:2002 failed" in caplog.text and "hung" in caplog.text
    got = outcomes(tmp_path / "pool.db")
    assert len(got) == got["idx"].nunique() == 60 and (got["status"] == "ok").all()
    # each scripted failure (one crash, one hang) costs its fault exactly one more attempt; one fault
    # can meet both (crashed on one server, then hung on the next)
    assert (got["attempts"] >= 1).all() and got["attempts"].sum() == 62
    assert got["attempts"].max() in (2, 3)
    # the same plan on one healthy server (in this process)
    one = FakeServers(SC.model_dump_json(), str(tmp_path / "one"))
    run_campaign(SC, plan, tmp_path / "one.db", LocalExecutor(1), progress=False,
                 testbed=Testbed(CarlaSimulator({"timeout": 5.0, "client_factory": one, "port": 2010})))  # fmt: skip
    ref = outcomes(tmp_path / "one.db")
    cols = [c for c in ref.columns if c != "attempts"]
    assert got[cols].equals(ref[cols])


@pytest.mark.slow
def test_a_server_that_keeps_failing_leaves_the_pool(ray_session, tmp_path, caplog):
    """No restart command: the crashed server stays down, fails 3 times and is taken out; the other
    server runs every fault. Kept traces come back from the actors and the driver writes them."""
    plan = random_plan(SC, "m-random", 8, 8, seed=5)
    pool = FakeServers(SC.model_dump_json(), str(tmp_path / "pool"), ((2002, "crash", 2, 5),))
    ex = CarlaPoolExecutor([Server("127.0.0.1", 2000), Server("127.0.0.1", 2002)],
                           run_timeout=30.0, ready_timeout=30.0)  # fmt: skip
    with caplog.at_level(logging.WARNING, "drivefi.campaign"):
        s = run_campaign(SC, plan, tmp_path / "r.db", ex, progress=False,
                         testbed=Testbed(CarlaSimulator({"timeout": 2.0, "client_factory": pool})),
                         keep_traces="all")  # fmt: skip
    status = {x["server"]: x for x in ex.status()}
    ex.close()
    assert status["127.0.0.1:2002"]["removed"] and "taken out of the pool" in caplog.text
    assert s.done == 8 and s.error == 0
    assert status["127.0.0.1:2000"]["ok"] + status["127.0.0.1:2002"]["ok"] == 8
    kept = sorted((tmp_path / "r.traces").glob("*.parquet"))
    assert len(kept) == 8
    tr = read_trace(kept[0])
    assert tr.meta["sim"] == "carla" and tr.meta["fault"]["plan_index"] == 0
