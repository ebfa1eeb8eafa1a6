"""Write the documentation pages that are generated from the code: the encoder table and the config
reference. ``tests/test_docs.py`` fails when the committed pages differ from what this writes.

    python tools/gen_docs.py            # rewrite docs/reference/encoders.md and config.md
    python tools/gen_docs.py --check    # exit 1 naming the stale pages, change nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from pathlib import Path

import _interrupt  # noqa: F401  (first: Ctrl-C while the rest imports exits 130, no traceback)

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("reference/encoders.md", "reference/config.md")


def field_comments(cls) -> dict[str, str]:
    """{field name: its trailing ``# comment``} from a dataclass's source (comments say what a field means)."""
    comments: dict[str, str] = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return comments
    names = {f.name for f in dataclasses.fields(cls)}
    last_field = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.start[1] == 4 and token.string in names:
            last_field = (token.string, token.start[0])
        elif token.type == tokenize.COMMENT and last_field and token.start[0] == last_field[1]:
            comments[last_field[0]] = token.string.lstrip("# ").strip()
    return comments


def type_text(kind) -> str:
    """``int``, ``str | None``, ``Literal['voc', 'synthetic']``: a type hint as a config user reads it."""
    text = kind.__name__ if isinstance(kind, type) and not typing.get_args(kind) else str(kind)
    return text.replace("typing.", "").replace("NoneType", "None")


def default_text(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        if dataclasses.is_dataclass(value):
            return None
    else:
        return "(required)"
    return "null" if value is None else repr(value)


def config_rows(cls, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every leaf field of a config dataclass, nested keys dotted."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows = []
    for field in dataclasses.fields(cls):
        kind = hints.get(field.name, field.type)
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(kind):
            rows.extend(config_rows(kind, prefix=f"{key}."))
            continue
        meaning = comments.get(field.name, "").replace("|", "\\|")  # outside code spans a pipe ends the cell
        rows.append((key, type_text(kind), default_text(field) or "", meaning))
    return rows


def config_page() -> str:
    from repeatseg.config import ClsConfig, SegConfig, StudyConfig

    lines = ["# Config reference", "",
             "Generated from `repeatseg/config.py` by `python tools/gen_docs.py`; do not edit by hand.",
             "Every key can be set in a YAML file (`--config`) or on the command line (`--set key=value`);",
             "an unknown key or a value of the wrong type is an error that names the key.", ""]
    for title, cls, tool in (("Segmentation runs", SegConfig, "tools/train_seg.py"),
                             ("Classification (pretraining) runs", ClsConfig, "tools/train_cls.py"),
                             ("Studies", StudyConfig, "tools/transfer_study.py")):
        lines += [f"## {title} (`{tool}`)", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{k}` | `{t}` | `{d}` | {m} |" for k, t, d, m in config_rows(cls)]
        lines.append("")
    return "\n".join(lines)


def package_encoders() -> list[str]:
    """The encoders repeatseg itself registers: a family registered at run time (a test's, a user's) is
    not the package's, so the page does not depend on what else the process imported."""
    from repeatseg.variants import default_variants

    return [v.name for v in default_variants() if type(v).__module__.startswith("repeatseg.")]


def encoders_page() -> str:
    from repeatseg import describe
    from repeatseg.accounting import accounting_table

    table = accounting_table([describe(name) for name in package_encoders()])
    lines = ["# Encoder table", "",
             "Generated from the family table (`repeatseg/variants.py`) by `python tools/gen_docs.py`; do not",
             "edit by hand. Encoders (backbone + skip adapters), MACs at 512x512, ratios against the dense",
             "model each is compared with (`python tools/model_info.py --all`).", "", "```", table, "```", ""]
    return "\n".join(lines)


def render() -> dict[str, str]:
    return {"reference/encoders.md": encoders_page(), "reference/config.md": config_page()}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale pages (exit 1), write nothing")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="the docs folder")
    return parser


def main(args) -> int:
    docs = Path(args.docs)
    stale = []
    for page, text in render().items():
        path = docs / page
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(page)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"stale generated pages (run python tools/gen_docs.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    print("\n".join(f"wrote docs/{page}" for page in stale) if stale else "generated pages are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
