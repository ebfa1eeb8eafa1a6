"""A study runs its units on one kind of CPU: units recorded on another stop it before it runs more
(unless allow_mixed_machines, when its report lists the kinds)."""

import json

import pytest

from repeatseg.config import StudyConfig, load_config
from repeatseg.engine.distributed import DistInfo
from repeatseg.study import runner
from repeatseg.study.machines import MixedMachinesError, check_machine, describe_kind, machine_lines
from repeatseg.threads import cpu_kind

OTHER = {"cpu": "AMD EPYC 9B14", "cpu_capability": "AVX512"}


def study(*sets: str) -> StudyConfig:
    return load_config(StudyConfig, sets=["encoders=[dense_r18_w1_b8]", "seeds=[0]", *sets])


def write_timing(study_dir, *kinds: dict) -> None:
    study_dir.mkdir(exist_ok=True)
    lines = [json.dumps({"kind": "cell", "encoder": "dense_r18_w1_b8", "seed": i, "seconds": 1.0, **kind})
             for i, kind in enumerate(kinds)]
    (study_dir / "timing.jsonl").write_text("".join(line + "\n" for line in lines))


def test_units_of_this_kind_of_cpu_or_of_none_recorded_pass(tmp_path):
    check_machine(study(), tmp_path / "new")  # nothing ran yet
    write_timing(tmp_path, {}, cpu_kind())  # a unit from before CPUs were recorded, one from here
    check_machine(study(), tmp_path)


def test_units_of_another_kind_stop_the_study_naming_both(tmp_path):
    write_timing(tmp_path, OTHER, OTHER)
    with pytest.raises(MixedMachinesError) as error:
        check_machine(study(), tmp_path)
    text = str(error.value)
    assert "AMD EPYC 9B14, AVX512 (2 units)" in text and describe_kind(cpu_kind()) in text
    assert "allow_mixed_machines: true" in text
    check_machine(study("allow_mixed_machines=true"), tmp_path)


def test_the_study_stops_before_it_writes_anything(tmp_path):
    write_timing(tmp_path, OTHER)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(MixedMachinesError):
        runner.run_study(study(), tmp_path, DistInfo())
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no marker, no study.yaml, no unit


def test_the_report_lists_the_kinds_only_when_there_are_several(tmp_path):
    write_timing(tmp_path, OTHER, cpu_kind(), cpu_kind())
    lines = machine_lines(tmp_path)
    assert "Units from several kinds of CPU" in lines[0]
    assert "- AMD EPYC 9B14, AVX512: 1 unit" in lines and f"- {describe_kind(cpu_kind())}: 2 units" in lines
    write_timing(tmp_path, cpu_kind())
    assert machine_lines(tmp_path) == [] and machine_lines(None) == []
