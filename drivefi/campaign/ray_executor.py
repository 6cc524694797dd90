"""Ray executor: batches run as Ray tasks on a cluster (or a local, loopback-only Ray).

Up to 2 x ``workers`` batches are in flight (on a cluster, ``workers`` defaults to its CPU count);
results are yielded as tasks finish. A task whose worker process dies is retried by Ray
(``max_retries``), so a killed worker does not fail the campaign.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from drivefi.campaign.batch import run_batch
from drivefi.campaign.context import BatchContext
from drivefi.campaign.ray_session import RaySession

TASK_RETRIES = 3


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None, timeout: float | None = None):
        self.workers = max(1, workers)
        self.address = address
        self.session = RaySession(
            address, num_cpus=None if address else self.workers, timeout=timeout
        )

    def start(self) -> None:
        """Start or join Ray (an unreachable address is an exit-2 error before any file is made)."""
        self.session.start()

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        ray = self.session.start()
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(run_batch)
        ctx_ref = ray.put(ctx)
        it = iter(batches)
        pending = [task.remote(ctx_ref, b) for b in islice(it, 2 * self.workers)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
            nxt = next(it, None)
            if nxt is not None:
                pending.append(task.remote(ctx_ref, nxt))

    def map_chunks(self, fn, scenario, items: list, *args) -> list:
        """``fn(scenario, chunk, *args)`` for chunks of ``items`` as Ray tasks (the pipeline's
        training runs)."""
        return map_chunks(self.session, self.workers, fn, scenario, items, *args)

    def close(self) -> None:
        self.session.close()


def map_chunks(session: RaySession, workers: int, fn, scenario, items: list, *args) -> list:
    """``fn(scenario, chunk, *args)`` for about ``2 x workers`` chunks of ``items`` as Ray tasks
    of ``session``, results in order."""
    ray = session.start()
    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(fn)
    refs_args = [ray.put(a) for a in args]
    sc_ref = ray.put(scenario)
    n = max(1, min(len(items), 2 * workers))
    size = -(-len(items) // n)
    refs = [task.remote(sc_ref, items[i : i + size], *refs_args)
            for i in range(0, len(items), size)]  # fmt: skip
    return ray.get(refs)
