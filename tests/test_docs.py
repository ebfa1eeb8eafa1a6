"""The documentation: the generated pages match the code, the site builds strictly and offline, the
README stays a short front page whose links resolve, and no page points outside the repository."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tool_loader import load_tool

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def gen_docs():
    return load_tool("gen_docs")


@pytest.fixture(scope="module")
def rendered(gen_docs):
    return gen_docs.render()  # the encoder table describes every registered encoder: render once


@pytest.mark.slow
def test_generated_pages_match_the_code(rendered):
    stale = [page for page, text in rendered.items() if (ROOT / "docs" / page).read_text() != text]
    assert not stale, f"stale generated pages (run python tools/gen_docs.py): {stale}"


def test_gen_docs_check_names_a_stale_page_and_writes_nothing(gen_docs, rendered, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gen_docs, "render", lambda: rendered)
    for page, text in rendered.items():
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text(text)
    assert gen_docs.main(argparse.Namespace(check=True, docs=str(tmp_path))) == 0
    stale = tmp_path / "reference/config.md"
    stale.write_text("# edited by hand\n")
    assert gen_docs.main(argparse.Namespace(check=True, docs=str(tmp_path))) == 1
    assert "reference/config.md" in capsys.readouterr().err
    assert stale.read_text() == "# edited by hand\n"
    assert gen_docs.main(argparse.Namespace(check=False, docs=str(tmp_path))) == 0
    assert stale.read_text() == rendered["reference/config.md"]


def test_config_reference_lists_every_key_with_its_comment(rendered):
    from repeatseg.config import SegConfig

    page = rendered["reference/config.md"]
    assert "| `optim.lr` |" in page and "| `train.amp` | `Literal['auto', 'none', 'bf16', 'fp16']` |" in page
    assert "auto: bf16 on CUDA, fp32 on CPU" in page  # the field's comment in repeatseg/config.py
    for field in ("model", "data", "optim", "schedule", "train"):
        assert hasattr(SegConfig(), field) and f"| `{field}." in page


def test_no_page_refers_to_files_outside_the_repository():
    for path in [ROOT / "README.md", ROOT / "mkdocs.yml", *PAGES]:
        text = path.read_text()
        for needle in ("../shared", "/work/", "shared/BRIEF", "FAMILIES.md", "seeds/"):
            assert needle not in text, f"{path.relative_to(ROOT)} refers to {needle!r} outside the repository"


def test_readme_is_a_short_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme
    targets = [t for t in LINK.findall(readme) if not re.match(r"[a-z]+://", t)]
    assert targets, "the README links to the documentation pages"
    for target in targets:
        assert (ROOT / target.split("#")[0]).is_file(), f"README.md links to a missing file: {target}"


def test_every_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(ROOT / "docs")) for p in PAGES if str(p.relative_to(ROOT / "docs")) not in nav]
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocstrings_handlers") is None
                    or importlib.util.find_spec("material") is None,
                    reason="the docs extra is not installed (pip install -e '.[docs]'; make installs it)")
def test_site_builds_strictly_and_offline(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(tmp_path / "site")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "repeatseg" / "index.html").read_text()
    assert "build_segmenter" in api and "describe" in api  # rendered from the docstrings
    for html in (tmp_path / "site").rglob("*.html"):
        assert "fonts.googleapis.com" not in html.read_text(), f"{html.name} fetches fonts"
