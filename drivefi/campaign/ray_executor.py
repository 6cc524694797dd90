"""Ray executor: batches run as Ray tasks on a cluster (or a local Ray started on demand)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

from drivefi.campaign.batch import BatchContext, run_batch
from drivefi.errors import InputError


class RayExecutor:
    """Up to 2 x ``workers`` batches in flight; results are yielded as tasks finish."""

    name = "ray"

    def __init__(self, workers: int = 2, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise InputError(
                "--executor ray: the 'ray' package is not installed (pip install 'drivefi[ray]')"
            ) from None
        self.ray = ray
        self.workers = max(1, workers)
        self.address = address

    def _start(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise InputError(
                f"--ray-address {self.address}: cannot join the Ray cluster ({err})"
            ) from None

    def run(self, ctx: BatchContext, batches: Iterable[list]) -> Iterator[list[dict]]:
        self._start()
        ray = self.ray
        task = ray.remote(run_batch)
        ctx_ref = ray.put(ctx)
        it = iter(batches)
        pending = [task.remote(ctx_ref, b) for b in islice(it, 2 * self.workers)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
            nxt = next(it, None)
            if nxt is not None:
                pending.append(task.remote(ctx_ref, nxt))

    def close(self) -> None:
        if self.ray.is_initialized() and not self.address:
            self.ray.shutdown()
