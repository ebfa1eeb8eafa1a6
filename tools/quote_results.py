"""Write a published study's tables into the Markdown files that quote it (README, docs).

    python tools/quote_results.py --study results/digits README.md docs/results/digits.md
    python tools/quote_results.py --study results/digits --check README.md docs/results/digits.md

The tables are recomputed from the study's raw per-run files (repeatseg.study.published) and
written between the markers ``<!-- results/digits: begin ... -->`` and ``<!-- results/digits: end -->``;
--check changes nothing and exits 1 when a file quotes other numbers (the test suite runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _interrupt  # noqa: F401  (first: Ctrl-C while the rest imports exits 130, no traceback)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help="a published study folder, e.g. results/digits")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a file is stale")
    parser.add_argument("files", nargs="+", help="Markdown files holding the study's markers")
    return parser


def main(args: argparse.Namespace) -> int:
    from repeatseg.files import atomic_write_text
    from repeatseg.study.published import quoted_in, quoted_tables, requote

    name = Path(args.study).as_posix().rstrip("/")
    tables = quoted_tables(args.study)
    stale = []
    for path in map(Path, args.files):
        text = path.read_text()
        blocks = quoted_in(text, name)
        if not blocks:
            print(f"error: {path} has no <!-- {name}: begin --> ... <!-- {name}: end --> markers", file=sys.stderr)
            return 2
        if any(block != tables for block in blocks):
            stale.append(path)
            if not args.check:
                atomic_write_text(path, requote(text, name, tables))
    if args.check and stale:
        print(f"stale: {', '.join(map(str, stale))} quote other numbers than {name} gives; run "
              f"python tools/quote_results.py --study {name} {' '.join(args.files)}", file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(args.files)} file(s)"
          + (f"; updated {', '.join(map(str, stale))}" if stale and not args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
