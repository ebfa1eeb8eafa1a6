"""One kind of CPU per study, unless the study allows several.

A CPU run is deterministic on one kind of machine at one thread count, and only there: another
CPU's kernels round and block differently, and a digits pretraining takes another trajectory from
its first steps (docs: results, digits). Units of two kinds of CPU are then not the repetitions of
one measurement that the study's reruns and its reproduction check assume, so a study whose
``timing.jsonl`` records another kind stops before it runs more on this one, naming both, unless
``allow_mixed_machines``; the report lists the kinds when there are several. Units recorded
before CPUs were recorded name none and are not checked.
"""

from __future__ import annotations

from pathlib import Path

from ..config import StudyConfig
from ..errors import MixedMachinesError
from ..threads import cpu_kind
from .aggregate import timing_records

KIND_KEYS = ("cpu", "cpu_capability", "onednn_max_cpu_isa")  # what ``cpu_kind`` records


def describe_kind(kind: dict) -> str:
    return ", ".join(str(kind[key]) for key in KIND_KEYS if key in kind)


def _units(n: int) -> str:
    return f"{n} unit" + ("" if n == 1 else "s")


def recorded_kinds(study_dir: Path) -> dict[str, int]:
    """Each kind of CPU the study's units ran on (``describe_kind``) and how many units ran there."""
    counts: dict[str, int] = {}
    for record in timing_records(study_dir):
        if "cpu" in record:
            kind = describe_kind(record)
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def check_machine(study: StudyConfig, study_dir: Path) -> None:
    """Refuse to run more units of ``study_dir`` on this kind of CPU if its units ran on another."""
    here, recorded = describe_kind(cpu_kind()), recorded_kinds(study_dir)
    if not recorded or here in recorded or study.allow_mixed_machines:
        return
    raise MixedMachinesError(
        f"{study_dir}: its units ran on another kind of CPU than this one, so new units here would not "
        f"repeat their measurement (another CPU's kernels round differently and training diverges from "
        f"its first steps):\n  recorded: " + "; ".join(f"{kind} ({_units(n)})" for kind, n in recorded.items())
        + f"\n  this host: {here}\nRun it on that kind of machine, start a new study folder here, or set "
        "allow_mixed_machines: true to pool them anyway (the report then lists the kinds).")


def machine_lines(study_dir: Path | None) -> list[str]:
    """The report's lines naming the kinds of CPU when the units ran on more than one."""
    recorded = recorded_kinds(study_dir) if study_dir is not None else {}
    if len(recorded) <= 1:
        return []
    return ["**Units from several kinds of CPU** (`allow_mixed_machines: true`): each kind rounds "
            "differently, so units do not reproduce across them; pooled below.", "",
            *(f"- {kind}: {_units(n)}" for kind, n in recorded.items()), ""]
