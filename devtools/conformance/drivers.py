"""The drivers under test, by name: SQLAlchemy dialects and pg8000 connect functions (stock is the reference).

Imported by the pytest plugins inside the suites' runs, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final

STOCK: Final = "stock"
KIT_STOCK: Final = "kit-stock"
KIT_PIPELINE: Final = "kit-pipeline"
DRIVERS: Final = (STOCK, KIT_STOCK, KIT_PIPELINE)
KIT_DRIVERS: Final = (KIT_STOCK, KIT_PIPELINE)

# SQLAlchemy's own pg8000 dialect, and the kit's two (registered when their modules are imported).
DIALECTS: Final = {
    STOCK: "postgresql+pg8000",
    KIT_STOCK: "postgresql+pg8000_dbapi",
    KIT_PIPELINE: "postgresql+pg8000_pipeline",
}
DIALECT_MODULES: Final = {KIT_STOCK: "lib.dbkit.pg_dbapi", KIT_PIPELINE: "lib.dbkit.pg_pipeline"}


def connect_function(driver: str) -> Callable[..., Any]:
    """The function that stands in for ``pg8000.dbapi.connect`` when running pg8000's suite on ``driver``."""
    import pg8000.dbapi

    if driver == STOCK:
        return pg8000.dbapi.connect  # type: ignore[no-any-return]
    connect: Callable[..., Any] = importlib.import_module(DIALECT_MODULES[driver]).connect
    return connect
