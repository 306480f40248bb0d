"""JSON responses written straight from pydantic models.

``model_dump_json`` serializes in pydantic's Rust core in one pass, and a ready
:class:`flask.Response` passes spectree's view wrapper untouched; returning a dict instead would
be walked once by spectree and once more by Flask's JSON provider on every request.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from pydantic import BaseModel


def json_response(model: BaseModel, **dump: Any) -> Response:
    """``model`` as an ``application/json`` response; ``dump`` goes to ``model_dump_json``."""
    return Response(model.model_dump_json(**dump), mimetype="application/json")
