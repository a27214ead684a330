"""What a benchmark ran on: the CPU, numpy's BLAS kernel and thread count, the environment.

Every benchmark prints :func:`describe` first, so that a figure can be read later: the CPU
model changes between machines, and OpenBLAS may run a slower kernel than the CPU allows
(``OPENBLAS_CORETYPE``; see the env notes before benchmarking).
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas() -> str:
    import numpy  # noqa: F401  (threadpoolctl reports only the libraries already loaded)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to see it)"
    found = [f"{info.get('internal_api')} {info.get('version')} kernel "
             f"{info.get('architecture')}, {info['num_threads']} threads"
             for info in threadpool_info() if info["user_api"] == "blas"]
    return "; ".join(found) or "none found"


def describe() -> str:
    """One line per fact: CPU, cores, BLAS, and the OpenBLAS variables in force."""
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                      "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    return (f"CPU: {cpu_model()} ({os.cpu_count()} cores)\n"
            f"BLAS: {blas()}\n"
            f"environment: {env or 'no OpenBLAS variables set'}")
