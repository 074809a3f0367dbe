"""The explicit registry of sink plug-ins (alert outputs).

Built-in sinks are listed here, one module each; third parties add theirs through the
``canary.sinks`` entry-point group. A duplicate ``type`` is an error, never a silent override.
Each sink class declares ``type`` and a pydantic ``Options`` model that validates its keys.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from canary.errors import ConfigError

if TYPE_CHECKING:
    from canary.config import Config, SinkConfig
    from canary.typing import SinkFactory

BUILTIN_SINKS = (
    "canary.sinks.stdout",
    "canary.sinks.webhook",
)
_OPTIONAL_SINKS = (
    "canary.sinks.pagerduty",
    "canary.sinks.opsgenie",
    "canary.sinks.slack",
    "canary.sinks.teams",
    "canary.sinks.email",
    "canary.sinks.syslog",
)


@cache
def sink_types() -> dict[str, SinkFactory]:
    found: dict[str, SinkFactory] = {}

    def add(factory: SinkFactory, origin: str) -> None:
        if factory.type in found:
            raise ConfigError("sinks", f"sink type {factory.type!r} from {origin} is already registered")
        found[factory.type] = factory

    for module_name in BUILTIN_SINKS:
        add(importlib.import_module(module_name).SINK, module_name)
    for module_name in _OPTIONAL_SINKS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        add(module.SINK, module_name)
    for ep in entry_points(group="canary.sinks"):
        add(ep.load(), f"entry point {ep.name}")
    return found


def sink_options(sink: SinkConfig, index: int) -> Any:
    """Validate a sink's plug-in keys with its ``Options`` model."""
    types = sink_types()
    if sink.type not in types:
        raise ConfigError(f"sinks[{index}].type", f"unknown sink type {sink.type!r}; known: {', '.join(sorted(types))}")
    try:
        return types[sink.type].Options.model_validate(sink.model_extra or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(f"sinks[{index}].{loc}" if loc else f"sinks[{index}]", msg) from None


def validate_plugins(config: Config) -> None:
    for i, sink in enumerate(config.sinks):
        sink_options(sink, i)
