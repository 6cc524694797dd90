"""One BLAS thread for the 3-TBN's small dense algebra.

The fit's least squares and the predictor's covariance propagation multiply matrices of a few
hundred rows at most. OpenBLAS splits such products over every core; on a machine whose cores
are busy (other processes, a campaign's workers) its threads wait on each other and a product
takes many times longer than on one thread, more so the larger the model (measured on 2 busy
cores: a 21-point agent's fit 19 s -> 4 s, its scoring 50 s -> 13 s). The numbers do not change.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def one_blas_thread():
    """Run the body with the BLAS libraries on one thread (restored after)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
