"""The web family's listener components, in start order (``canary.plugins.BUILTIN_SOURCES`` names this list)."""

from __future__ import annotations

from collections.abc import Sequence

from canary.config import Config
from canary.plugins import SourceType
from canary.typing import Component
from canary.web import api, console


def components(config: Config) -> Sequence[Component]:
    """The API, and the console beside it (sharing its authenticator: one tarpit counts failed API calls
    and failed sign-ins alike)."""
    if not config.api.enabled:
        return []
    rest = api.ApiComponent()
    return [rest, console.ConsoleComponent(rest.api)] if config.api.console else [rest]


SOURCES = [SourceType("api", components)]
