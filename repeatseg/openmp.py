"""OpenMP threads that wait briefly: no collapse beside a load repeatseg does not know about.

torch's CPU kernels run on GNU OpenMP, whose idle threads spin for about 300,000 iterations before
they sleep. On a machine shared with other work a spinning thread holds a core the thread it waits
for needs, so every parallel region waits on the scheduler: one 2-thread digits pretraining beside
two busy processes on 2 cores took 22.9x as long as alone (fair share: 2x). With
``GOMP_SPINCOUNT=10000`` it took 2.6-2.9x, and alone 22.4 s against 22.6 s: the spin only decides
how long a thread waits, never what it computes, so results are bit-identical (docs/results/speed.md,
measured with ``tools/load_test.py`` and ``tools/time_units.py``). ``OMP_WAIT_POLICY=PASSIVE`` (no
spin) gave 1.7x beside the load but 1.2x alone, so it stays the user's choice.

libgomp reads the setting once, when torch loads it: ``import repeatseg`` before ``import torch``
(every tool does, through ``tools/_interrupt.py``), or export the variable yourself. A value the
user set, or any ``OMP_WAIT_POLICY``, is kept. Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SPIN_COUNT = "10000"


def wait_briefly(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``GOMP_SPINCOUNT`` unless the user chose a spin or wait policy or torch is already loaded
    (then it would not apply, and the environment would say otherwise). Returns whether it did."""
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ or "torch" in sys.modules:
        return False
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
