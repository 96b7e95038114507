"""Cloud Functions entry point: ``functions-framework --source function/main.py --target rotate``.

``POST`` rotates (optional body ``{"dry_run": true}``), ``GET`` reports status. All logic lives in the
``rotator`` package beside this file.
"""

import flask
import functions_framework
from rotator.handler import default_handler

_handler = default_handler()


@functions_framework.http
def rotate(request: flask.Request) -> flask.Response:
    """Rotate the pull secrets (POST) or report their state (GET)."""
    return _handler(request)
