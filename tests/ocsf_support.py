"""OCSF schema validation for tests: ``validate_ocsf(record)`` checks one record against the JSON
Schema the ``ocsf-json-schema`` package generates from the OCSF export of the record's own
``metadata.version`` (with the profiles it declares in ``metadata.profiles``), for the class its
``class_uid`` names. Every object is closed (``additionalProperties: false``), so a misspelt or
made-up attribute fails like a wrong type, a missing required attribute or a value its pattern refuses."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


class OcsfInvalid(AssertionError):
    """A record the schema refuses; ``errors`` lists ``(json path, message)`` for each violation."""

    def __init__(self, class_uid: object, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = "\n".join(f"  {path}: {message[:300]}" for path, message in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"OCSF class {class_uid}: {len(errors)} violation(s)\n{lines}{more}")


@functools.cache
def _embedded(version: str) -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(version))


@functools.cache
def _validator(version: str, class_uid: int, profiles: tuple[str, ...]) -> Draft202012Validator:
    embedded = _embedded(version)
    schema = embedded.get_class_schema(embedded.lookup_class_name_from_uid(class_uid), list(profiles))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_ocsf(record: Mapping[str, Any]) -> None:
    """Raise :class:`OcsfInvalid` (an AssertionError naming every error's JSON path) unless ``record``
    is a valid event of the OCSF class and version it declares."""
    metadata = record.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("version"), str):
        raise OcsfInvalid(record.get("class_uid"), [("$.metadata.version", "missing: the OCSF version is required")])
    class_uid = record.get("class_uid")
    if not isinstance(class_uid, int) or isinstance(class_uid, bool):
        raise OcsfInvalid(class_uid, [("$.class_uid", f"not an integer: {class_uid!r}")])
    profiles = tuple(sorted(str(p) for p in metadata.get("profiles") or ()))
    try:
        validator = _validator(metadata["version"], class_uid, profiles)
    except (ValueError, FileNotFoundError) as exc:
        raise OcsfInvalid(class_uid, [("$", f"no such OCSF class / version: {exc}")]) from exc
    errors = sorted(validator.iter_errors(record), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise OcsfInvalid(class_uid, [(e.json_path, e.message) for e in errors])
    deprecated = list(_deprecated(record, validator.schema, validator.schema.get("$defs", {}), "$"))
    if deprecated:
        raise OcsfInvalid(class_uid, [(path, "deprecated in this OCSF version") for path in deprecated])


def _deprecated(value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any], path: str) -> Iterator[str]:
    """Paths of attributes the version marks deprecated (valid, but a consumer may already ignore them)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            yield from _deprecated(item, schema["items"], defs, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for name, item in value.items():
            attribute = schema.get("properties", {}).get(name)
            if isinstance(attribute, Mapping):
                if attribute.get("deprecated"):
                    yield f"{path}.{name}"
                yield from _deprecated(item, attribute, defs, f"{path}.{name}")
