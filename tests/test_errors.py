"""repeatseg's own errors share one base class and keep their builtin one; the tools print them as one
line (exit 2, 3 for a non-finite loss) and let anything else keep its traceback; a module whose extra
is missing says which extra to install."""

import argparse
import subprocess
import sys

import _interrupt
import pytest

import repeatseg
from repeatseg import errors
from repeatseg.extras import require

BUILTIN_BASES = {
    errors.ConfigError: ValueError, errors.DataError: RuntimeError, errors.CheckpointError: ValueError,
    errors.MissingFileError: FileNotFoundError, errors.OutputError: ValueError, errors.WriteError: OSError,
    errors.OutputExistsError: FileExistsError,
    errors.FolderClaimedError: RuntimeError, errors.DeviceError: RuntimeError, errors.MixedRecipesError: ValueError,
    errors.NonFiniteLossError: RuntimeError, errors.MissingExtraError: ImportError,
}


@pytest.mark.parametrize("kind", BUILTIN_BASES, ids=lambda kind: kind.__name__)
def test_every_error_is_a_repeatseg_error_and_keeps_its_builtin_base(kind):
    assert issubclass(kind, repeatseg.RepeatsegError) and issubclass(kind, BUILTIN_BASES[kind])
    assert getattr(repeatseg, kind.__name__) is kind


def test_the_modules_that_raised_them_still_export_them():
    from repeatseg.config import ConfigError
    from repeatseg.data import DataError
    from repeatseg.engine.checkpoint import CheckpointError
    from repeatseg.engine.trainer import NonFiniteLossError
    from repeatseg.files import FolderClaimedError
    from repeatseg.outputs import OutputError
    from repeatseg.study.recipes import MixedRecipesError

    assert {ConfigError, DataError, CheckpointError, NonFiniteLossError, FolderClaimedError, OutputError,
            MixedRecipesError} <= set(BUILTIN_BASES)


def test_unknown_encoder_name_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="unknown repeatseg encoder"):
        repeatseg.get_variant("repeat_r99_q4")


def run_tool(main, capsys):
    with pytest.raises(SystemExit) as stopped:
        _interrupt.run(main, argparse.ArgumentParser())
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("error, code", [(errors.ConfigError("train.lr: not a number"), 2),
                                         (errors.NonFiniteLossError("loss is nan at step 3"), 3)])
def test_tool_prints_a_repeatseg_error_as_one_line(monkeypatch, capsys, error, code):
    monkeypatch.setattr(sys, "argv", ["tool"])

    def main(args):
        raise error

    exit_code, err = run_tool(main, capsys)
    assert exit_code == code and err == f"error: {error}\n"


def test_tool_lets_a_bug_keep_its_traceback(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tool"])

    def main(args):
        raise ValueError("a bug, not a message for the user")

    with pytest.raises(ValueError, match="a bug"):
        _interrupt.run(main, argparse.ArgumentParser())


def test_training_tool_exits_2_with_one_line_for_a_missing_config(cli, tmp_path):
    code, _, err = cli("--config", tmp_path / "missing.yaml", "--output", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "missing.yaml" in err


def test_training_tool_raises_a_bug_with_its_traceback(cli, tmp_path, monkeypatch):
    import repeatseg.cli

    def broken(*args, **kwargs):
        raise KeyError("a bug in the config loader")

    monkeypatch.setattr(repeatseg.cli, "load_config", broken)
    with pytest.raises(KeyError, match="a bug"):
        cli("--output", tmp_path / "run")


def test_require_names_the_extra_of_a_missing_package():
    with pytest.raises(errors.MissingExtraError, match=r"needs not_a_package_here.*pip install 'repeatseg\[train\]'"):
        require("not_a_package_here", extra="train")


def test_require_keeps_the_error_of_an_installed_package_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "half_installed").mkdir()
    (tmp_path / "half_installed" / "__init__.py").write_text("import its_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="its_missing_dependency") as raised:
        require("half_installed", extra="train")
    assert not isinstance(raised.value, errors.MissingExtraError)


LEAN = """
import sys
import repeatseg
import segmentation_models_pytorch as smp
smp.Unet("repeat_r18_f4", encoder_weights=None, classes=2)
repeatseg.describe("repeat_r18_f4")
print(" ".join(name for name in ("matplotlib", "albumentations", "mlxtend", "torchmetrics", "pandas", "sklearn",
                                 "scipy", "cv2", "repeatseg.engine", "repeatseg.data", "repeatseg.study")
               if name in sys.modules))
"""


def test_import_repeatseg_and_an_encoder_pull_nothing_of_training():
    result = subprocess.run([sys.executable, "-c", LEAN], capture_output=True, text=True, check=True)
    assert result.stdout.split() == []
