"""Lambda entry points: wiring only. Importing one is its function's INIT, with the garbage collector off.

INIT allocates some 150,000 objects that live as long as the execution environment. The cyclic collector would walk
them over and over while they are being created (some 70 passes) and again in every later full collection: a cost
bench/results.md measures, not a saving of memory (INIT leaves a few hundred unreachable objects). So it is off from
here until the handler module has been imported, which then calls `init_done()`: everything allocated so far moves
to the permanent generation (`gc.freeze`, the idiom the gc docs give for long-lived start-up state) and the collector
is on again for what requests allocate.
"""

from __future__ import annotations

import gc

gc.disable()


def init_done() -> None:
    """End of INIT: freeze what it allocated out of the collector's sight, and turn the collector back on."""
    gc.freeze()
    gc.enable()
