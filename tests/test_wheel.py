"""The wheel, installed with its core dependencies only, gives the encoders and nothing of training.

The wheel is built from a copy of the package files (the checkout stays clean) and installed with
pip into a fresh virtual environment without site packages. The core's dependencies (torch, timm,
smp, ... and everything they require, found through ``importlib.metadata``) are reused from this
interpreter: their top-level packages and ``.dist-info`` folders are linked into one folder that a
``.pth`` file adds to the new environment, so nothing is downloaded and nothing of the extras is
visible there.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ("albumentations", "mlxtend", "matplotlib", "torchmetrics", "cv2", "sklearn", "pandas", "tensorboard")

CHECK = f"""
import importlib.util, sys
import repeatseg
import segmentation_models_pytorch as smp
import timm
assert repeatseg.__file__.startswith(sys.prefix), repeatseg.__file__  # the installed wheel, not the checkout
smp.Unet("repeat_r18_f4", encoder_weights=None, classes=2)
smp.FPN("repeat_r18_f4_b16", encoder_weights=None, classes=2)  # a grammar name: on demand
timm.create_model("repeat_resnet18_c4", num_classes=3)
assert repeatseg.describe("repeat_r18_f4").stored_floats > 0
present = [name for name in {EXTRAS_ONLY!r} if importlib.util.find_spec(name) is not None]
assert not present, present
try:
    import repeatseg.data.presets  # the training augmentations: albumentations, of the train extra
except ImportError as error:
    print("presets:", error)
"""


def core_distributions(requirements: list[str]) -> set[str]:
    """The installed distributions ``requirements`` need, with everything they require (no extras)."""
    found, todo = set(), list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = metadata.distribution(requirement.name).metadata["Name"]
        if name not in found:
            found.add(name)
            todo.extend(metadata.distribution(name).requires or [])
    return found


def link_distributions(names: set[str], folder: Path) -> None:
    """Link each distribution's top-level files and folders (and its .dist-info) into ``folder``."""
    folder.mkdir()
    for name in names:
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        for top in {Path(file).parts[0] for file in dist.files or [] if not str(file).startswith("..")}:
            source, target = base / top, folder / top
            if top != "__pycache__" and source.exists() and not target.exists():
                target.symlink_to(source)


def build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(ROOT / "repeatseg", source / "repeatseg", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(tmp_path / "dist"), str(source)], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("repeatseg-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def core_env(wheel, tmp_path_factory) -> Path:
    """A virtual environment holding the wheel and its core dependencies only: its python."""
    tmp_path = tmp_path_factory.mktemp("env")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    link_distributions(core_distributions(wheel_requirements(wheel)), tmp_path / "core")
    (site / "core.pth").write_text(str(tmp_path / "core") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    return python


def test_wheel_declares_only_the_core_outside_its_extras(wheel):
    requirements = [Requirement(line) for line in wheel_requirements(wheel)]
    core = sorted(r.name for r in requirements if r.marker is None)
    assert core == sorted(["torch", "torchvision", "segmentation-models-pytorch", "timm", "safetensors", "numpy", "pyyaml"])
    extras = {str(r.marker).split("==")[1].strip(" '\"") for r in requirements if r.marker is not None}
    assert {"train", "digits", "onnx", "equivariant", "docs", "test", "all"} <= extras


def test_core_install_builds_the_encoders_without_the_training_extras(core_env):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([core_env, "-c", CHECK], capture_output=True, text=True, env=env, cwd=core_env.parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pip install 'repeatseg[train]'" in result.stdout  # a training module names the extra it needs
