"""Imported first by every tool: Ctrl-C before the tool's own handling starts (while torch and the
rest import, a few seconds) ends it with one line and exit code 130 instead of a traceback. The
tools catch a later Ctrl-C themselves (and say how to resume)."""

import sys


def _one_line_for_ctrl_c(kind, value, traceback, previous=sys.excepthook):
    if issubclass(kind, KeyboardInterrupt):  # Python then exits with 130, as killed by SIGINT
        print("interrupted", file=sys.stderr)
        return
    previous(kind, value, traceback)


sys.excepthook = _one_line_for_ctrl_c
