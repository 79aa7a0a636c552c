"""Whole-process cProfile for `python -m bench --profile`, loaded by Python's `site` at start-up.

The benchmark puts this directory first on the operator's PYTHONPATH and names the output file in
BENCH_PROFILE_OUT; the stats are written at interpreter exit (the operator exits normally on SIGTERM).
Without that variable this module does nothing. cProfile sees the main thread, where the event loop,
and so every reconcile, runs; it counts CPU time (time.process_time).
"""

import os

_OUT = os.environ.get("BENCH_PROFILE_OUT")
if _OUT:
    import atexit
    import cProfile
    import time

    # CPU time, not wall time: on a shared 2-core machine wall time mostly measures waiting for a CPU.
    _PROFILER = cProfile.Profile(time.process_time)
    _PROFILER.enable()

    def _dump(out: str = _OUT) -> None:
        _PROFILER.disable()
        _PROFILER.dump_stats(out)

    atexit.register(_dump)
