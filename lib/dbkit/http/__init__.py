"""The kit's HTTP parts for a FastAPI app on Lambda: size limits, HEAD as GET, the one error shape, JSON checks.

An app needs one call, `create_api(title=..., errors={MyError: ErrorAnswer(404, "my_code")})`, then its routes.
"""

from lib.dbkit.http.api import create_api
from lib.dbkit.http.errors import ErrorAnswer, ErrorDetail, error_response
from lib.dbkit.http.media import media_type, require_json
from lib.dbkit.http.validators import decimal_digits, storable_text

__all__ = [
    "ErrorAnswer",
    "ErrorDetail",
    "create_api",
    "decimal_digits",
    "error_response",
    "media_type",
    "require_json",
    "storable_text",
]
