"""pytest plugin for SQLAlchemy's suites (``-p devtools.conformance.sqla_plugin``): registers the kit's dialects.

Loaded before SQLAlchemy's own plugin resolves ``--db``, so ``postgresql+pg8000_pipeline`` (and
``postgresql+pg8000_dbapi``) are found in SQLAlchemy's dialect registry, exactly as an application importing the
kit would have them. Nothing else of SQLAlchemy's harness is changed.
"""

from __future__ import annotations

import importlib

from devtools.conformance import drivers

for _module in drivers.DIALECT_MODULES.values():
    importlib.import_module(_module)
