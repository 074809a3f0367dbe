"""The explicit registries of plug-ins: sinks (alert outputs), sources (detection inputs) and
seeders (one per datastore kind).

Built-ins are listed here, one module each, by name: the kernel never imports a family, it loads
the modules named here. Third parties add theirs through the entry-point groups ``canary.sinks``,
``canary.sources`` and ``canary.seeders``. A duplicate ``type`` (or ``kind``) is an error, never a
silent override.

* A sink module exposes ``SINK``: a class with ``type`` and a pydantic ``Options`` model.
* A source module exposes ``SOURCE``: a :class:`SourceType` whose ``components(config)`` returns the
  listener components the configuration asks for (none when the source is not configured).
* A seeder module exposes ``SEEDER``: a class with ``kind``, constructed as ``SEEDER(datastore,
  registry)`` and implementing :class:`canary.seeder.Seeder`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from canary.errors import ConfigError

if TYPE_CHECKING:
    from canary.config import Config, DatastoreConfig, SinkConfig
    from canary.seeder import Seeder
    from canary.store.registry import Registry
    from canary.typing import Component, SinkFactory, SuppressRule

BUILTIN_SINKS = (
    "canary.sinks.stdout",
    "canary.sinks.webhook",
    "canary.sinks.splunk",
    "canary.sinks.sentinel",
    "canary.sinks.elastic",
    "canary.sinks.security_lake",
)
_OPTIONAL_SINKS = (
    "canary.sinks.pagerduty",
    "canary.sinks.opsgenie",
    "canary.sinks.slack",
    "canary.sinks.teams",
    "canary.sinks.email",
    "canary.sinks.syslog",
)


#: Built-in source families, in listener start order; each module lists its sources as ``SOURCES``.
BUILTIN_SOURCES = (
    "canary.postgres.sources",
    "canary.credentials.sources",
    "canary.contact.sources",
    "canary.health.sources",  # the scheduler starts last: its first heartbeat needs the log tails running
    "canary.web.sources",  # the REST API (/api/v1)
)
BUILTIN_SEEDERS = ("canary.seeding.postgres",)


@dataclass(frozen=True)
class SourceType:
    """A registered detection source (implements :class:`canary.typing.SourceFactory`)."""

    type: str
    build: Callable[[Config], Sequence[Component]]
    #: Stateless pipeline suppression rules this source's events rely on (installed at runtime start).
    suppress_rules: tuple[SuppressRule, ...] = ()

    def components(self, config: Config) -> Sequence[Component]:
        return self.build(config)


def _collect(section: str, attr: str, key: str, builtins: Sequence[str], group: str,
             optional: Sequence[str] = (), *, many: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def add(plugin: Any, origin: str) -> None:
        name = getattr(plugin, key)
        if name in found:
            raise ConfigError(section, f"{section[:-1]} {key} {name!r} from {origin} is already registered")
        found[name] = plugin

    for module_name in builtins:
        declared = getattr(importlib.import_module(module_name), attr)
        for plugin in declared if many else (declared,):
            add(plugin, module_name)
    for module_name in optional:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        add(getattr(module, attr), module_name)
    for ep in entry_points(group=group):
        add(ep.load(), f"entry point {ep.name}")
    return found


@cache
def sink_types() -> dict[str, SinkFactory]:
    return _collect("sinks", "SINK", "type", BUILTIN_SINKS, "canary.sinks", _OPTIONAL_SINKS)


@cache
def source_types() -> dict[str, SourceType]:
    """Every registered source type, built-ins first (in start order), then entry points."""
    return _collect("sources", "SOURCES", "type", BUILTIN_SOURCES, "canary.sources", many=True)


@cache
def seeder_types() -> dict[str, Callable[..., Seeder]]:
    """Seeder classes by datastore ``kind``."""
    return _collect("seeders", "SEEDER", "kind", BUILTIN_SEEDERS, "canary.seeders")


def seeder_for(datastore: DatastoreConfig, registry: Registry) -> Seeder:
    """The seeder of ``datastore``'s kind (for verify and rotation; the CLI uses ``from_config``)."""
    types = seeder_types()
    if datastore.kind not in types:
        raise ConfigError("datastores", f"no seeder for datastore kind {datastore.kind!r}; known: {', '.join(sorted(types))}")
    return types[datastore.kind](datastore, registry)


def configured_seeder(config: Config, datastore: DatastoreConfig, registry: Registry) -> Seeder:
    """The seeder of ``datastore`` with the ``[seeding]`` pools and limits applied, as the CLI makes it
    (a seeder class without ``from_config`` takes the datastore alone)."""
    types = seeder_types()
    if datastore.kind not in types:
        raise ConfigError("datastores", f"no seeder for datastore kind {datastore.kind!r}; known: {', '.join(sorted(types))}")
    factory = types[datastore.kind]
    make = getattr(factory, "from_config", None)
    return make(config, datastore.name, registry) if make is not None else factory(datastore, registry)


def build_components(sources: Iterable[SourceType], config: Config) -> list[Component]:
    """The components ``sources`` build from ``config``, in order."""
    return [c for source in sources for c in source.components(config)]


def suppress_rules() -> list[SuppressRule]:
    """The suppression rules every registered source declares (each once)."""
    out: list[SuppressRule] = []
    for source in source_types().values():
        out += [r for r in source.suppress_rules if r not in out]
    return out


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
