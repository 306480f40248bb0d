"""gunicorn's own log lines (workers booting and exiting, errors, the optional access log) in
the service's JSON format, so that a log collector reads a single format.

gunicorn.conf.py selects it (``logger_class``) unless LOG_FORMAT=text.
"""

from __future__ import annotations

from gunicorn import glogging

from service.log import JsonFormatter


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's logger, its handlers writing one JSON object per line."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
