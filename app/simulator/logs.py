"""The simulator's loggers (structlog, configured by whoever starts the simulator)."""

from __future__ import annotations

import structlog

log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger("app.simulator")
webhook_log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger("app.simulator.webhooks")
