"""Line up concurrent Delta writers: their next write of a table starts at the same moment.

Races between processes depend on the scheduler: on a busy machine writers that left a
barrier together may still reach their commits one after the other, and a test of a race
protection then proves nothing. Inside a writer process, `line_up` makes the store's next
real `write_deltalake` call on one table wait for the other writers at a barrier, so the
commits race every time. Nothing else changes: the call itself is deltalake's.
"""

import contextlib
import threading
from collections.abc import Callable
from typing import Any


def line_up(barrier: Any, table: str) -> Callable[[], None]:
    """Patch this process's DeltaStore writes; returns `arm()` to line up the next one.

    Args:
        barrier: a multiprocessing barrier shared by the writers (one party each).
        table: the table (last path segment) whose writes are lined up.

    Returns:
        `arm`: call it before a store call; that call's first write of `table` waits for
        the other writers. A broken barrier (a writer gave up) lets writes through.
    """
    from metaxy_core.stores import _delta

    real = _delta.write_deltalake
    armed = threading.Event()

    def write_deltalake(target: Any, *args: Any, **kwargs: Any) -> Any:
        if armed.is_set() and str(getattr(target, "table_uri", target)).rstrip("/").endswith(
            f"/{table}"
        ):
            armed.clear()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=60)
        return real(target, *args, **kwargs)

    _delta.write_deltalake = write_deltalake  # pyright: ignore[reportAttributeAccessIssue]
    return armed.set
