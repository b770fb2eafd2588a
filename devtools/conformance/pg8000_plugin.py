"""pytest plugin for pg8000's test/dbapi (``-p devtools.conformance.pg8000_plugin``): the driver and route under test.

``pg8000.dbapi.connect`` is replaced before the suite imports it (its conftest calls ``pg8000.dbapi.connect``, its
test modules ``from pg8000.dbapi import connect``), by the driver named in CONFORMANCE_DRIVER, with what the
route adds to every call that does not say otherwise: a verifying TLS context (CONFORMANCE_CA_FILE), the TLS
negotiation (CONFORMANCE_SSLNEGOTIATION, kit drivers only: stock pg8000 has SSLRequest alone) and startup
options (CONFORMANCE_STARTUP_OPTIONS, the stand-in's endpoint). Host, port and password come from pg8000's own
PGHOST, PGPORT and PGPASSWORD.
"""

from __future__ import annotations

import inspect
import os
import ssl
from typing import Any

import pg8000.dbapi

from devtools.conformance import drivers
from lib.dbkit.dsn import POSTGRES_ALPN

_DRIVER = os.environ["CONFORMANCE_DRIVER"]
_CA_FILE = os.environ.get("CONFORMANCE_CA_FILE")
_NEGOTIATION = os.environ.get("CONFORMANCE_SSLNEGOTIATION", "postgres")
_STARTUP_OPTIONS = os.environ.get("CONFORMANCE_STARTUP_OPTIONS")
_SIGNATURE = inspect.signature(pg8000.dbapi.connect)
_CONNECT = drivers.connect_function(_DRIVER)


def connect(*args: Any, **kwargs: Any) -> Any:
    """``pg8000.dbapi.connect``'s signature, on the driver and route under test."""
    arguments = dict(_SIGNATURE.bind(*args, **kwargs).arguments)
    if _CA_FILE and arguments.get("ssl_context") is None:
        arguments["ssl_context"] = ssl.create_default_context(cafile=_CA_FILE)
    context = arguments.get("ssl_context")
    if _NEGOTIATION == "direct" and _DRIVER != drivers.STOCK and isinstance(context, ssl.SSLContext):
        # As the kit's URL parser builds a context for sslnegotiation=direct: ALPN is part of it.
        context.set_alpn_protocols([POSTGRES_ALPN])
        arguments["sslnegotiation"] = _NEGOTIATION
    if _STARTUP_OPTIONS:
        params = dict(arguments.get("startup_params") or {})
        params["options"] = " ".join(filter(None, [params.get("options"), _STARTUP_OPTIONS]))
        arguments["startup_params"] = params
    return _CONNECT(**arguments)


pg8000.dbapi.connect = connect
