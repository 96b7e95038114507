# ruff: noqa: INP001  # a command-line script beside data files, not part of a package
"""Rebuild a Terraform provider's schema from the prebuilt CDK Terrain bindings published for it.

The real providers cannot be downloaded or built here, but the `cdktn-provider-<name>` Python packages are
generated from each provider's real schema (`terraform providers schema -json`) and ship the generated
TypeScript source inside their jsii bundle. That source states, for every resource, data source and nested
block, each argument's name, whether it is required, optional or computed, its type, and which names are
nested blocks (list/set, at most one item). This script reads it back into the JSON format of
`terraform providers schema -json` (one provider), which infra/tools/schemastub serves to `terraform validate`.

What it cannot recover: validators inside the provider (enums, conflicts), and the exact element types of
computed-only nested objects (typed as dynamic). Argument names, nesting, required-ness and types are exact.

Usage: python provider_schema.py WHEEL OUTPUT_JSON   (prints the provider's version on stdout)
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

_SOURCE_MAP = re.compile(r"sourceMappingURL=data:application/json;base64,(\S+)")
_CHUNK = re.compile(r"^export (?:class|function|interface) (\w+)", re.MULTILINE)
_HCL_ENTRY = re.compile(
    r"^\s+(\w+): \{\n\s+value: (?P<value>[^\n]*),\n\s+isBlock: (?P<block>true|false),\n"
    r"\s+type: \"(?P<type>\w+)\",\n\s+storageClassType: \"(?P<storage>\w+)\",",
    re.MULTILINE,
)
_GETTER = re.compile(
    r"^\s+// (?P<name>\w+) - computed: (?P<computed>true|false), optional: (?P<optional>true|false), "
    r"required: (?P<required>true|false)\n(?P<body>(?:(?!^\s+// \w+ - computed:).*\n)*)",
    re.MULTILINE,
)
_NESTED = re.compile(r"new (\w+)(OutputReference|List|Map)\(this, \"")
_RESOURCE_TYPE = re.compile(r'public static readonly tfResourceType = "(\w+)";')

# A cty type in its JSON form: "string", ["list", "string"], ...
CtyType = str | list[str]

_STORAGE_TYPES: dict[str, CtyType] = {
    "string": "string",
    "number": "number",
    "boolean": "bool",
    "stringList": ["list", "string"],
    "numberList": ["list", "number"],
    "booleanList": ["list", "bool"],
    "stringMap": ["map", "string"],
    "numberMap": ["map", "number"],
    "booleanMap": ["map", "bool"],
}
_GETTER_TYPES: list[tuple[str, CtyType]] = [
    ("getStringAttribute", "string"),
    ("getNumberAttribute", "number"),
    ("getBooleanAttribute", "bool"),
    ("getNumberListAttribute", ["list", "number"]),
    ("getListAttribute", ["list", "string"]),
    ("getStringMapAttribute", ["map", "string"]),
    ("getNumberMapAttribute", ["map", "number"]),
    ("getBooleanMapAttribute", ["map", "bool"]),
]


def _chunks(source: str) -> dict[str, str]:
    """Split a generated TypeScript file into its top-level exports, by name."""
    marks = list(_CHUNK.finditer(source))
    out: dict[str, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(source)
        out.setdefault(mark.group(1), source[mark.start() : end])
    return out


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _attr_type(storage: str, kind: str) -> CtyType:
    base = _STORAGE_TYPES.get(storage)
    if base is None:
        return "dynamic"
    if isinstance(base, list) and kind == "set":
        return ["set", base[1]]
    return base


def _getter_type(body: str) -> CtyType:
    for call, typ in _GETTER_TYPES:
        if call in body:
            if call == "getListAttribute" and "Fn.toset" in body:
                return ["set", "string"]
            return typ
    return "dynamic"


def _has_dynamic(block: dict[str, Any]) -> bool:
    return any(a["type"] == "dynamic" for a in block["attributes"].values()) or any(
        _has_dynamic(b["block"]) for b in block["block_types"].values()
    )


class _Parser:
    def __init__(self, chunks: dict[str, str]) -> None:
        self.chunks = chunks
        self.stack: list[str] = []

    def block(self, hcl_chunk: str, class_chunk: str) -> dict[str, Any]:
        hcl = {m.group(1): m for m in _HCL_ENTRY.finditer(hcl_chunk)}
        attributes: dict[str, Any] = {}
        block_types: dict[str, Any] = {}
        for getter in _GETTER.finditer(class_chunk):
            name = getter.group("name")
            computed = getter.group("computed") == "true"
            optional = getter.group("optional") == "true"
            required = getter.group("required") == "true"
            body = getter.group("body")
            entry = hcl.get(name)
            nested = _NESTED.search(body)
            if entry is not None and entry.group("block") == "true" and nested is not None:
                struct = nested.group(1)
                inner = self.struct(struct)
                single = nested.group(2) == "OutputReference"
                mode = entry.group("type")
                # Terraform refuses dynamic-typed attributes inside set blocks; where a computed nested
                # object's type was not recovered, a list block validates the same arguments.
                as_set = mode == "set" and not _has_dynamic(inner)
                block_types[name] = {
                    "nesting_mode": "set" if as_set else "list",
                    "block": inner,
                    **({"max_items": 1} if single else {}),
                    **({"min_items": 1} if required else {}),
                }
                continue
            if entry is not None:
                typ = _attr_type(entry.group("storage"), entry.group("type"))
            else:
                typ = "dynamic" if nested is not None else _getter_type(body)
            attr: dict[str, Any] = {"type": typ}
            if required:
                attr["required"] = True
            else:
                if optional:
                    attr["optional"] = True
                if computed:
                    attr["computed"] = True
            if name.endswith("_wo"):
                attr["write_only"] = True
            attributes[name] = attr
        return {"attributes": attributes, "block_types": block_types}

    def struct(self, struct: str) -> dict[str, Any]:
        if struct in self.stack:
            # A generated name collision makes a few deeply nested blocks look recursive; leave them empty
            # (none of them is used here) rather than guess.
            return {"attributes": {}, "block_types": {}}
        self.stack.append(struct)
        try:
            return self._struct(struct)
        finally:
            self.stack.pop()

    def _struct(self, struct: str) -> dict[str, Any]:
        hcl_chunk = self.chunks.get(f"{_lower_first(struct)}ToHclTerraform", "")
        class_chunk = self.chunks.get(f"{struct}OutputReference", "")
        return self.block(hcl_chunk, class_chunk)


def parse_module(source: str) -> tuple[str, str, dict[str, Any]] | None:
    """Return (kind, type name, block) of one generated resource, data source or provider file."""
    match = _RESOURCE_TYPE.search(source)
    if match is None:
        return None
    type_name = match.group(1)
    chunks = _chunks(source)
    main = next(
        (
            name
            for name, chunk in chunks.items()
            if chunk.startswith("export class")
            and re.search(r"extends cdktn\.(TerraformResource|TerraformDataSource|TerraformProvider)", chunk)
        ),
        None,
    )
    if main is None:
        return None
    class_chunk = chunks[main]
    kind = re.search(r"extends cdktn\.(\w+)", class_chunk).group(1)  # type: ignore[union-attr]
    hcl_start = class_chunk.find("synthesizeHclAttributes")
    parser = _Parser(chunks)
    block = parser.block(class_chunk[hcl_start:], class_chunk[:hcl_start])
    # Meta-arguments handled by Terraform itself, never part of a provider schema.
    for meta in ("provider", "depends_on", "count", "for_each", "lifecycle", "connection"):
        block["attributes"].pop(meta, None)
    if kind == "TerraformProvider":
        block["attributes"].pop("alias", None)
    return kind, type_name, block


def _sources(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        bundle = next(n for n in zf.namelist() if n.endswith(".jsii.tgz"))
        data = zf.read(bundle)
    out: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not (member.isfile() and member.name.endswith("/index.js") and "/lib/" in member.name):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            js = handle.read().decode("utf-8")
            match = _SOURCE_MAP.search(js)
            if match is None:
                continue
            source_map = json.loads(base64.b64decode(match.group(1)))
            out.extend(s for s in source_map.get("sourcesContent", []) if s)
    return out


def provider_version(wheel: Path) -> str:
    """Return the version of the real provider whose schema the bindings were generated from."""
    for source in _sources(wheel):
        match = re.search(r"providerVersion: '([^']+)'", source)
        if match:
            return match.group(1)
    raise ValueError(f"{wheel}: no providerVersion found")


def build(wheel: Path) -> dict[str, Any]:
    """Return the provider's schema in the format of `terraform providers schema -json` (one provider)."""
    schema: dict[str, Any] = {
        "provider": {"version": 0, "block": {"attributes": {}, "block_types": {}}},
        "resource_schemas": {},
        "data_source_schemas": {},
    }
    for source in _sources(wheel):
        parsed = parse_module(source)
        if parsed is None:
            continue
        kind, type_name, block = parsed
        entry = {"version": 0, "block": block}
        if kind == "TerraformResource":
            schema["resource_schemas"][type_name] = entry
        elif kind == "TerraformDataSource":
            schema["data_source_schemas"][type_name] = entry
        else:
            schema["provider"] = entry
    return schema


def main(argv: list[str]) -> int:
    """Write the schema rebuilt from WHEEL to OUTPUT_JSON."""
    if len(argv) != 2:  # noqa: PLR2004  # WHEEL and OUTPUT_JSON
        sys.stderr.write(__doc__ or "")
        return 2
    schema = build(Path(argv[0]))
    Path(argv[1]).write_text(json.dumps(schema, sort_keys=True), encoding="utf-8")
    sys.stdout.write(provider_version(Path(argv[0])) + "\n")
    sys.stderr.write(
        f"{argv[0]}: {len(schema['resource_schemas'])} resources, {len(schema['data_source_schemas'])} data sources\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
