"""A local Cybersource Invoicing v2 simulator: signed API, lifecycle, faults, payer actions,
webhooks."""

from app.simulator.app import SimulatorApp, create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig, WebhookConfig

__all__ = [
    "MerchantConfig",
    "SimulatorApp",
    "SimulatorConfig",
    "WebhookConfig",
    "create_simulator_app",
]
