"""JSON responses written straight from pydantic models.

``model_dump_json`` serializes in pydantic's Rust core in one pass; returning a dict instead
would have Flask's JSON provider walk it in Python on every request.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from pydantic import BaseModel


def json_response(model: BaseModel, **dump: Any) -> Response:
    """``model`` as an ``application/json`` response; ``dump`` goes to ``model_dump_json``."""
    return Response(model.model_dump_json(**dump), mimetype="application/json")
