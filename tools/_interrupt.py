"""How every tool starts and ends. Imported first by every tool: Ctrl-C before the tool's own
handling starts (while torch and the rest import, a few seconds) ends it with one line and exit
code 130 instead of a traceback; the tools catch a later Ctrl-C themselves (and say how to resume).

``run(main, parser)`` parses the command line and runs ``main``: an error repeatseg raises on purpose
(``repeatseg.RepeatsegError``: a bad config, missing data, a damaged checkpoint, a missing extra) is
printed as one line with exit code 2 (3 for a non-finite loss); any other exception is a bug and
keeps its traceback. Nothing here imports torch, so ``--help`` stays fast; it sets OpenMP's brief
waits before torch loads (``repeatseg/openmp.py``, read from the package without importing it).
"""

import importlib.util
import sys


def _repeatseg_exit_code(error: BaseException) -> int | None:
    errors = sys.modules.get("repeatseg.errors")  # not loaded: error cannot be one of repeatseg's
    return None if errors is None else errors.exit_code(error)


def _one_line(error: BaseException) -> None:
    print(f"error: {sys.modules['repeatseg.errors'].error_message(error)}", file=sys.stderr)


def _one_line_for_ctrl_c(kind, value, traceback, previous=sys.excepthook):
    if issubclass(kind, KeyboardInterrupt):  # Python then exits with 130, as killed by SIGINT
        print("interrupted", file=sys.stderr)
        return
    if value is not None and _repeatseg_exit_code(value) is not None:  # e.g. a missing extra at import time
        _one_line(value)
        return
    previous(kind, value, traceback)


def run(main, parser) -> None:
    """``sys.exit(main(parser.parse_args()))``, with repeatseg's own errors as one line (exit 2 or 3)."""
    args = parser.parse_args()
    try:
        code = main(args)
    except Exception as error:
        code = _repeatseg_exit_code(error)
        if code is None:
            raise
        _one_line(error)
    sys.exit(code)


def _wait_briefly() -> None:
    package = importlib.util.find_spec("repeatseg")  # finds the package without running its __init__
    if package is None or not package.submodule_search_locations:
        return
    path = f"{package.submodule_search_locations[0]}/openmp.py"
    spec = importlib.util.spec_from_file_location("_repeatseg_openmp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.wait_briefly()


sys.excepthook = _one_line_for_ctrl_c
_wait_briefly()
