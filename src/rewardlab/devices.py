"""What the hardware offers and how to use it: native bf16 arithmetic, the CPU allocator (leaf module: imports torch only)."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["ALLOCATOR_ENV", "CPU_THREADS_ENV", "KERNEL_CACHE_CAPACITY", "MATMUL_CACHE_CAPACITY", "CpuThreadGovernor",
           "cap_kernel_cache", "choose_cpu_threads", "threads_for_others", "keep_freed_memory", "native_bf16", "resolve_precision", "tune_cpu_memory"]

CPU_THREADS_ENV = "REWARDLAB_CPU_THREADS"
"""``auto`` (default): one thread when the machine is already busy (see :func:`choose_cpu_threads`); a number: that many."""

ALLOCATOR_ENV = "REWARDLAB_CPU_ALLOCATOR"
"""Set to ``default`` to leave glibc's allocator and the oneDNN/ideep kernel caches at their defaults (see :func:`tune_cpu_memory`)."""
ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
KERNEL_CACHE_CAPACITY = 256
"""oneDNN primitives kept (its default is 1024): one packed MiniLM training step creates ~100-200."""
IDEEP_CACHE_ENV = "LRU_CACHE_CAPACITY"
MATMUL_CACHE_CAPACITY = 32
"""Entries of ideep's computation cache kept (its default is 1024): one step has ~10 distinct matmul shapes."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
_tuned = False


def native_bf16() -> bool:
    """True on CUDA GPUs with bf16 support and on CPUs with AVX512-BF16 or AMX-BF16 instructions."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; other values pass through.

    >>> resolve_precision("fp32")
    'fp32'
    """
    if precision != "auto":
        return precision
    return "bf16" if native_bf16() else "fp32"


def keep_freed_memory() -> bool:
    """Make glibc keep freed tensor memory for reuse instead of returning it to the OS; True if applied.

    PyTorch's CPU tensors come straight from ``malloc``. By default glibc serves every block above
    its mmap threshold (128 KiB, raised adaptively) with a fresh ``mmap`` and unmaps it on ``free``,
    so each step's activations and gradients are page-faulted in again, one 4 KiB page at a time:
    on this project's 2-core VM a SmolLM2 step of 1,702 tokens took 9.0-9.8 s instead of 7.7-7.9 s
    (``aten::silu`` on a 10 MB tensor 11 ms instead of 2 ms). This sets ``M_MMAP_THRESHOLD`` to its maximum (32 MiB) and
    turns off heap trimming, the process-wide equivalent of ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` (glibc tunables; jemalloc/tcmalloc do the same by design). Peak RSS
    is unchanged (freed memory is reused, not added); memory is not handed back to the OS until the
    process ends. Idempotent; a no-op off Linux/glibc or when ``$REWARDLAB_CPU_ALLOCATOR=default``.

    >>> isinstance(keep_freed_memory(), bool)
    True
    """
    global _tuned
    if _tuned:
        return True
    if _defaults_asked() or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _tuned


def cap_kernel_cache(capacity: int = KERNEL_CACHE_CAPACITY, matmul_capacity: int = MATMUL_CACHE_CAPACITY) -> bool:
    """Cap the two per-shape kernel caches behind CPU bf16 matrix products; True if this call set either.

    PyTorch runs CPU bf16 matrix products through ideep and oneDNN, which build a kernel per input
    shape and keep it: oneDNN's primitive cache (``$ONEDNN_PRIMITIVE_CACHE_CAPACITY``, default 1,024
    kernels, each holding buffers) and ideep's computation cache in front of it
    (``$LRU_CACHE_CAPACITY``, default 1,024). Packed batches bring new shapes at every step, so both
    keep growing until they are full, ~10 MB of live memory per step for MiniLM (measured with
    ``mallinfo2``; fp32 training, which does not use them, stays flat). On this project's CPU, 40
    packed bf16 MiniLM steps peaked at 2,507 MB with both defaults, 2,218-2,349 MB with oneDNN's
    at 256, and 1,746 MB with ideep's at 32 as well, at the same speed (oneDNN at 64 was 18% slower,
    at 0 twice as slow; ideep at 1 or 32 no slower). Both libraries read the variables when they first build
    a kernel, so this only takes effect before the process's first bf16 matrix product (``train()``
    and the scorers call it first thing). A value the user set is kept, and
    ``$REWARDLAB_CPU_ALLOCATOR=default`` leaves both defaults in place.

    >>> isinstance(cap_kernel_cache(), bool)
    True
    """
    if _defaults_asked():
        return False
    changed = False
    for name, value in ((ONEDNN_CACHE_ENV, capacity), (IDEEP_CACHE_ENV, matmul_capacity)):
        if name not in os.environ:
            os.environ[name] = str(value)
            changed = True
    return changed


def choose_cpu_threads(load: float | None = None, cores: int | None = None, setting: str | None = None) -> tuple[int | None, str | None]:
    """``(threads to use, why)`` for CPU work; ``None`` keeps torch's default (one per core).

    On a CPU that other jobs already keep busy (1-minute load average >= the number of cores), every
    OpenMP barrier of a multi-threaded kernel waits for a descheduled thread: training measured 0.21
    pairs/s with 2 threads against 2.95 with 1 under a load of ~10 on 2 cores (issue 21). Then one
    thread is faster. ``$REWARDLAB_CPU_THREADS`` overrides: a number, or ``auto``.

    >>> choose_cpu_threads(load=9.5, cores=2, setting="auto")[0], choose_cpu_threads(load=0.3, cores=2, setting="auto")[0]
    (1, None)
    >>> choose_cpu_threads(load=0.3, cores=2, setting="2")
    (2, 'REWARDLAB_CPU_THREADS=2')
    """
    setting = (setting if setting is not None else os.environ.get(CPU_THREADS_ENV, "auto")).strip().lower()
    if setting != "auto":
        if not setting.isdigit() or int(setting) < 1:
            raise ValueError(f"{CPU_THREADS_ENV} must be a positive number or 'auto', got {setting!r}")
        return int(setting), f"{CPU_THREADS_ENV}={setting}"
    cores = cores or os.cpu_count() or 1
    if load is None:
        load = _current_load()
        if load is None:
            return None, "no load average"
    if cores > 1 and load >= cores:
        return 1, f"the CPU is already busy (load {load:.1f} on {cores} cores): 1 thread avoids waiting on descheduled threads"
    return None, None


def _current_load() -> float | None:
    """How busy the CPU is now: the larger of the 1-minute load average and the processes runnable this instant
    besides this one (``/proc/loadavg``'s fourth field), since the average lags a load that just started."""
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return None
    try:
        runnable = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1
    except (OSError, IndexError, ValueError):
        runnable = 0
    return max(average, float(runnable))


def threads_for_others(others: float, cores: int, most: int) -> int:
    """Threads to use when other processes keep ``others`` cores busy: the cores left, rounded, at least 1 and at most
    ``most``. With one busy process on 2 cores, 1 thread: an OpenMP kernel's 2 threads would wait at every barrier
    for the one the scheduler took away (issue 33 reported 5x slower steps; ``bench_contention.py`` measured the
    slowdown with and without this rule: docs/benchmarks.md).

    >>> threads_for_others(0.1, 2, 2), threads_for_others(0.7, 2, 2), threads_for_others(1.9, 2, 2), threads_for_others(1.2, 8, 8)
    (2, 1, 1, 7)
    """
    return max(1, min(most, int(cores - others + 0.5)))


def _cpu_busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (``/proc/stat``: user, nice, system, irq, softirq, steal)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        ticks = sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class CpuThreadGovernor:
    """Re-checks, every ``interval_s`` of wall time, how many cores *other* processes use (all CPU time in
    ``/proc/stat`` minus this process's own, over the interval) and sets torch's intra-op threads to
    :func:`threads_for_others`, after ``patience`` readings in a row agree; back up to ``most`` when they leave.
    The check costs two small file reads. Off (``check`` does nothing) where ``/proc/stat`` is missing or threads
    were fixed by ``$REWARDLAB_CPU_THREADS``. OpenMP's wait policy cannot change once its threads exist, so the
    thread count is the lever.

    ``threads`` is the count in force when it starts (torch's, unless given). ``check()`` returns a message when it
    changed the threads, else None.
    """

    def __init__(self, most: int | None = None, cores: int | None = None, interval_s: float = 2.0, patience: int = 2,
                 threads: int | None = None,
                 clock: "Callable[[], float] | None" = None, busy: "Callable[[], float | None] | None" = None,
                 own: "Callable[[], float] | None" = None, set_threads: "Callable[[int], None] | None" = None):
        import time

        self.cores = cores or os.cpu_count() or 1
        self.most = most or self.cores
        self.interval_s, self.patience = interval_s, patience
        self._clock = clock or time.monotonic
        self._busy = busy or _cpu_busy_seconds
        self._own = own or time.process_time
        self._set = set_threads or torch.set_num_threads
        explicit = os.environ.get(CPU_THREADS_ENV, "auto").strip().lower() != "auto"
        first = self._busy()
        self.enabled = not explicit and first is not None and self.cores > 1
        self._last = (self._clock(), first or 0.0, self._own())
        self.threads = threads if threads is not None else torch.get_num_threads()
        self._pending: list[int] = []
        self.others = 0.0

    def check(self) -> str | None:
        if not self.enabled:
            return None
        now = self._clock()
        if now - self._last[0] < self.interval_s:
            return None
        busy, own = self._busy(), self._own()
        if busy is None:
            return None
        wall = now - self._last[0]
        self.others = max(0.0, ((busy - self._last[1]) - (own - self._last[2])) / wall)
        self._last = (now, busy, own)
        want = threads_for_others(self.others, self.cores, self.most)
        self._pending = (self._pending + [want])[-self.patience:]
        if want == self.threads or len(self._pending) < self.patience or len(set(self._pending)) > 1:
            return None
        self.threads = want
        self._set(want)
        return (f"CPU threads: {want} (other processes use {self.others:.1f} of {self.cores} cores)" if want < self.most
                else f"CPU threads: {want} (the other processes left: {self.others:.1f} of {self.cores} cores busy)")


def tune_cpu_memory(device: torch.device | str = "cpu") -> bool:
    """rewardlab's CPU memory settings, :func:`cap_kernel_cache` and :func:`keep_freed_memory`, when
    ``device`` is the CPU; True if the allocator setting is in place. ``train()`` and the scorers call it."""
    if torch.device(device).type != "cpu":
        return False
    cap_kernel_cache()
    return keep_freed_memory()


def _defaults_asked() -> bool:
    """``$REWARDLAB_CPU_ALLOCATOR=default``: leave glibc, oneDNN and ideep as they are."""
    return os.environ.get(ALLOCATOR_ENV, "").lower() == "default"
