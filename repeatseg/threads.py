"""Intra-op threads (``torch.set_num_threads``): part of a run's recipe, and never more than the cores.

The count changes results (reductions split across threads add in another order: ``make demo``
gave 30.83 mIoU at 1 thread and 24.01 at torch's default, same seed), so a run records it
(``train.threads`` in ``config.yaml``, ``threads`` in ``metrics.json``) and reproduces at the same
count. Unset, it is ``$OMP_NUM_THREADS`` when that is set, else the cores this process may run on
(``os.sched_getaffinity``) divided by the processes sharing them (a study's processes on this host,
``repeatseg.study.processes``): more threads than cores makes every process wait on the others
(on a loaded 2-core machine ``make demo`` took 68 minutes at torch's default against 4 at one thread).
"""

from __future__ import annotations

import os
import platform

import torch


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask: a cgroup or ``taskset`` may allow fewer
    than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_kind() -> dict[str, str]:
    """The CPU's model name and the instruction set torch's kernels chose (``AVX512``, ``AVX2``,
    ...): like the thread count, it decides how sums are split and rounded, so a run reproduces bit
    for bit on the same kind only (the digits study's units did not on another host: docs, results).
    The instruction set is not enough: oneDNN's convolutions block by the CPU's caches, and an Intel
    and an AMD host that both report ``AVX512`` train differently. A cap on oneDNN's instructions
    (``ONEDNN_MAX_CPU_ISA``, which moves a digits pretraining's first losses) is recorded when set."""
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:  # not Linux
        pass
    kind = {"cpu": model or platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    isa_cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if isa_cap:
        kind["onednn_max_cpu_isa"] = isa_cap.upper()
    return kind


def environment_threads() -> int | None:
    """``$OMP_NUM_THREADS`` when it is a positive whole number (what torch itself would start with)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_threads(processes: int = 1) -> int:
    """``$OMP_NUM_THREADS``, else the usable cores shared among ``processes`` (at least 1)."""
    return environment_threads() or max(1, usable_cores() // max(1, processes))


def apply_threads(train_cfg, processes: int = 1) -> int:
    """Set torch's intra-op threads from ``train.threads`` (unset: ``default_threads``) and write
    the count back into ``train_cfg``, so the run's saved config records it. Returns the count."""
    threads = train_cfg.threads or default_threads(processes)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    train_cfg.threads = threads
    return threads


def oversubscription(processes: int, threads: int) -> str | None:
    """A sentence saying why ``processes`` x ``threads`` will crowd this machine, or None if it fits."""
    cores = usable_cores()
    if processes * threads <= cores:
        return None
    who = f"{processes} processes x {threads} threads" if processes > 1 else f"{threads} threads"
    return (f"{who} > {cores} usable cores: every process will wait on the others, far beyond its fair share "
            f"of the machine; use --threads {max(1, cores // processes)} (train.threads)"
            + (" or fewer processes" if processes > 1 else ""))
