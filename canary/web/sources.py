"""The web family's listener components, in start order (``canary.plugins.BUILTIN_SOURCES`` names this list)."""

from __future__ import annotations

from canary.web import api

SOURCES = [api.SOURCE]
