"""The Crusoe Cloud API contract, loaded from the official Swagger 2.0 files.

The emulator takes its routes, operation ids, parameter lists and body schemas from
here instead of hard-coding them, so a test that passes against the emulator passes
against the shapes the real API documents. The validator covers the subset of JSON
Schema that these files use (``$ref``, ``type``, ``properties``, ``required``,
``items``, ``enum``, ``additionalProperties``, ``allOf``, ``x-nullable``), which keeps
the harness free of a ``jsonschema`` dependency.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The vendored Swagger files (``devkit/crusoe_api/README.md`` says where they come from).
SWAGGER_DIR = Path(__file__).resolve().parent / "crusoe_api"

#: Version prefix -> file name. Both prefixes are served by the real API with the same paths.
SWAGGER_FILES = {"/v1alpha5": "swagger-v1alpha5.json", "/v1": "swagger-v1.json"}

#: Documented deviations of the real API from its Swagger, applied on top of the files.
#: ``registry`` is what the API returns as ``usage`` for container-registry tokens but the
#: spec's enum lacks it (see crusoe_api/README.md); without this overlay every honest list response
#: would fail validation.
USAGE_ENUM_EXTRA = ("registry",)

_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


class SwaggerError(Exception):
    """The Swagger files are missing or do not hold what the emulator needs."""


@dataclass(frozen=True)
class Parameter:
    """One non-body parameter of an operation, as the spec declares it."""

    name: str
    location: str
    required: bool
    type: str | None
    enum: tuple[str, ...] | None


@dataclass(frozen=True)
class Operation:
    """One operation of the spec: route, id, parameters and schemas."""

    operation_id: str
    method: str
    path: str
    pattern: re.Pattern[str]
    parameters: tuple[Parameter, ...]
    body_schema: dict[str, Any] | None
    body_required: bool
    responses: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def response_schema(self, status: int) -> dict[str, Any] | None:
        """Return the schema the spec gives for ``status`` (``None``: no body declared)."""
        return self.responses.get(str(status))

    def declares(self, status: int) -> bool:
        """Tell whether the spec lists ``status`` among this operation's responses."""
        return str(status) in self.responses


class Spec:
    """One Swagger document: its operations and a validator over its definitions."""

    def __init__(self, document: dict[str, Any]) -> None:
        """Index the document's operations.

        Args:
            document: the parsed Swagger 2.0 JSON.
        """
        self.document = document
        self.base_path: str = document.get("basePath", "")
        self.definitions: dict[str, Any] = document.get("definitions", {})
        self._add_overlay()
        self.operations: dict[str, Operation] = {}
        self._routes: list[Operation] = []
        for path, item in document.get("paths", {}).items():
            for method, op in item.items():
                if method not in _HTTP_METHODS:
                    continue
                operation = self._operation(path, method.upper(), op)
                self.operations[operation.operation_id] = operation
                self._routes.append(operation)
        # Literal segments beat templated ones, as in the real router (``/a/list`` over ``/a/{id}``).
        self._routes.sort(key=lambda o: (o.path.count("{"), -len(o.path)))

    def _add_overlay(self) -> None:
        usage = self.definitions.get("LimitedUsageAPIKeyInfo", {}).get("properties", {}).get("usage")
        if isinstance(usage, dict) and "enum" in usage:
            usage["enum"] = [*usage["enum"], *(e for e in USAGE_ENUM_EXTRA if e not in usage["enum"])]

    def _operation(self, path: str, method: str, op: dict[str, Any]) -> Operation:
        params: list[Parameter] = []
        body_schema: dict[str, Any] | None = None
        body_required = False
        for raw in op.get("parameters", []):
            if raw.get("in") == "body":
                body_schema = raw.get("schema")
                body_required = bool(raw.get("required", False))
                continue
            enum = raw.get("enum")
            params.append(
                Parameter(
                    name=raw["name"],
                    location=raw["in"],
                    required=bool(raw.get("required", False)),
                    type=raw.get("type"),
                    enum=tuple(enum) if enum else None,
                ),
            )
        responses: dict[str, dict[str, Any] | None] = {}
        for status, resp in op.get("responses", {}).items():
            resolved = self.resolve(resp)
            responses[status] = resolved.get("schema")
        regex = "".join(
            "[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]+\})", path) if part
        )
        return Operation(
            operation_id=op.get("operationId", f"{method} {path}"),
            method=method,
            path=path,
            pattern=re.compile(f"^{regex}$"),
            parameters=tuple(params),
            body_schema=body_schema,
            body_required=body_required,
            responses=responses,
        )

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` pointers (``#/definitions/X``, ``#/responses/X``) to their target."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise SwaggerError(f"unsupported $ref {ref!r}")
            target: Any = self.document
            for part in ref[2:].split("/"):
                target = target[part]
            node = target
            seen += 1
            if seen > 64:
                raise SwaggerError(f"$ref loop at {ref!r}")
        return node

    def match(self, method: str, path: str) -> tuple[Operation | None, bool]:
        """Find the operation for a request path (without the version prefix).

        Returns:
            ``(operation, path_known)``: ``operation`` is ``None`` when the method is not
            allowed (``path_known`` true: answer 405) or the path is unknown (404).
        """
        path_known = False
        for op in self._routes:
            if op.pattern.match(path):
                path_known = True
                if op.method == method:
                    return op, True
        return None, path_known

    def validate(self, schema: dict[str, Any] | None, value: Any, where: str = "$") -> list[str]:
        """Validate ``value`` against ``schema``; return human-readable errors (empty: valid)."""
        if schema is None:
            return []
        schema = self.resolve(schema)
        if value is None and schema.get("x-nullable"):
            return []
        errors: list[str] = []
        for sub in schema.get("allOf", []):
            errors += self.validate(sub, value, where)
        type_error = _type_error(schema, value, where)
        if type_error:
            return [*errors, type_error]
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{where}: {value!r} not in {schema['enum']!r}")
        if isinstance(value, dict):
            errors += self._validate_object(schema, value, where)
        if isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                errors += self.validate(schema["items"], item, f"{where}[{index}]")
        return errors

    def _validate_object(self, schema: dict[str, Any], value: dict[str, Any], where: str) -> list[str]:
        required = schema.get("required", [])
        errors = [f"{where}: missing required {name!r}" for name in required if name not in value]
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += self.validate(props[key], item, f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += self.validate(extra, item, f"{where}.{key}")
        return errors


def _type_error(schema: dict[str, Any], value: Any, where: str) -> str | None:
    """Check the ``type`` keyword (an object is implied by ``properties``/``required``)."""
    expected = schema.get("type")
    if expected is None and ("properties" in schema or "required" in schema):
        expected = "object"
    types = _JSON_TYPES.get(expected) if isinstance(expected, str) else None
    if types is None:
        return None
    # bool is an int subclass in Python but not a JSON number.
    if isinstance(value, types) and not (expected in ("integer", "number") and isinstance(value, bool)):
        return None
    return f"{where}: expected {expected}, got {type(value).__name__}"


def load_specs(directory: Path | None = None) -> dict[str, Spec]:
    """Load both Swagger files, keyed by version prefix (``/v1alpha5``, ``/v1``).

    Raises:
        SwaggerError: a file is missing or its ``basePath`` is not the expected prefix.
    """
    directory = directory or SWAGGER_DIR
    specs: dict[str, Spec] = {}
    for prefix, name in SWAGGER_FILES.items():
        path = directory / name
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SwaggerError(f"{path} not found (the vendored Swagger files belong in the repository)") from exc
        spec = Spec(document)
        if spec.base_path != prefix:
            raise SwaggerError(f"{path}: basePath {spec.base_path!r}, expected {prefix!r}")
        specs[prefix] = spec
    return specs
