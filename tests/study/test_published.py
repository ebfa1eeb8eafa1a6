"""The published studies: what README and docs quote is recomputed from results/<study>/'s raw runs."""

from pathlib import Path

import pytest

from repeatseg.study.published import quoted_in, quoted_tables, requote

ROOT = Path(__file__).resolve().parents[2]
QUOTES = {"results/digits": ["README.md", "docs/results/digits.md"],  # study -> files that quote it
          "results/digits_1000": ["docs/results/digits.md"],
          "results/rot_digits": ["README.md", "docs/rotated-digits.md"],
          "results/digits_calibration": ["docs/results/digits.md"],
          "results/digits_ema": ["docs/results/digits.md"]}


@pytest.mark.parametrize("study", sorted(QUOTES))
def test_the_quoted_numbers_are_those_the_raw_runs_give(study, monkeypatch):
    monkeypatch.chdir(ROOT)  # the study's config paths are relative to the repository
    tables = quoted_tables(ROOT / study)
    for name in QUOTES[study]:
        blocks = quoted_in((ROOT / name).read_text(), study)
        assert blocks, f"{name} does not quote {study} (no markers)"
        assert all(block == tables for block in blocks), (
            f"{name} quotes other numbers than {study} gives: run python tools/quote_results.py --study {study} "
            + " ".join(QUOTES[study]))


def test_requote_replaces_only_the_marked_block():
    text = ("intro\n<!-- results/x: begin (tools/quote_results.py) -->\nold\n<!-- results/x: end -->\n"
            "<!-- results/y: begin -->\nother\n<!-- results/y: end -->\n")
    new = requote(text, "results/x", "| new |")
    assert quoted_in(new, "results/x") == ["| new |"] and quoted_in(new, "results/y") == ["other"]
    assert new.startswith("intro\n")
