"""Extract a Terraform provider's schema from its PyPI `cdktn-provider-*` wheel.

The cdktn provider packages are generated from the real provider's schema. Their jsii bundle
(`_jsii/*.jsii.tgz`) holds, per resource, `lib/<module>/index.js` (snake_case names, block or
attribute, list/set/map, element types, computed attributes as getters) and `index.d.ts`
(which arguments are required, which blocks are single objects). From those we write the
`terraform providers schema -json` layout for one provider, gzipped, which the stand-in provider
(`tests/terraform/stand_in_provider.py`) serves to the real Terraform.

    python tests/terraform/schema/extract_cdktn.py cdktn_provider_google google OUT.json.gz

The wheel's version names the provider version (cdktn-provider-google 21.1.0 = google 8.7.0);
it is written into the output and checked against terraform/versions.tf by the tests.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

_CLASS = re.compile(
    r"\nclass (\w+) extends cdktn\.(TerraformResource|TerraformDataSource|TerraformProvider) \{"
)
_TYPE = re.compile(r'static tfResourceType = "([a-z0-9_]+)";')
_ATTR = re.compile(
    r"(\w+): \{\s*value: (.*?),\s*isBlock: (true|false),\s*type: \"(\w+)\",\s*"
    r"storageClassType: \"(\w+)\",\s*\}",
    re.S,
)
_FN_IN_VALUE = re.compile(r"\b([a-z]\w*)ToHclTerraform\b")
_CAMEL_IN_VALUE = re.compile(r"(?:struct\.|this\._)(\w+)")
_GETTER = re.compile(r"get (\w+)\(\) \{\s*return this\.get(\w+)Attribute\('([a-z0-9_]+)'\)")
_COMPLEX_GETTER = re.compile(r'this\._(\w+) = new \w+\(this, "([a-z0-9_]+)"')

_SIMPLE = {
    "string": "string",
    "number": "number",
    "boolean": "bool",
    "stringList": ["list", "string"],
    "numberList": ["list", "number"],
    "booleanList": ["list", "bool"],
    "stringMap": ["map", "string"],
    "numberMap": ["map", "number"],
    "booleanMap": ["map", "bool"],
    "anyMap": ["map", "dynamic"],
}
_GETTER_TYPES = {
    "String": "string",
    "Number": "number",
    "Boolean": "bool",
    "List": ["list", "string"],
    "NumberList": ["list", "number"],
    "StringMap": ["map", "string"],
    "NumberMap": ["map", "number"],
    "BooleanMap": ["map", "bool"],
    "Any": "dynamic",
}


def _interfaces(dts: str) -> dict[str, dict[str, tuple[bool, bool]]]:
    """interface name -> {camelName: (optional, is_array)} from index.d.ts."""
    out: dict[str, dict[str, tuple[bool, bool]]] = {}
    for m in re.finditer(r"export interface (\w+)(?: extends [\w.]+)? \{(.*?)\n\}", dts, re.S):
        props: dict[str, tuple[bool, bool]] = {}
        for p in re.finditer(r"readonly (\w+)(\??): ([^;]+);", m.group(2)):
            props[p.group(1)] = (p.group(2) == "?", "[]" in p.group(3))
        out[m.group(1)] = props
    return out


def _function_bodies(js: str) -> dict[str, str]:
    bodies: dict[str, str] = {}
    for m in re.finditer(r"\nfunction (\w+)ToHclTerraform\(struct\) \{", js):
        end = js.find("\n}\n", m.end())
        bodies[m.group(1)] = js[m.end() : end]
    return bodies


def _attrs_of(body: str) -> list[tuple[str, str, bool, str, str]]:
    start = body.find("const attrs = {")
    if start < 0:
        return []
    end = body.find("\n        };", start)
    if end < 0:
        end = body.find("\n    };", start)
    section = body[start:end]
    return [
        (m.group(1), m.group(2), m.group(3) == "true", m.group(4), m.group(5))
        for m in _ATTR.finditer(section)
    ]


def _pascal(fn: str) -> str:
    return fn[0].upper() + fn[1:]


class _Module:
    def __init__(self, js: str, dts: str) -> None:
        self.js = js
        self.functions = _function_bodies(js)
        self.interfaces = _interfaces(dts)

    def block(self, attrs_body: str, interface: str, depth: int = 0) -> dict[str, Any]:
        props = self.interfaces.get(interface, {})
        attributes: dict[str, Any] = {}
        block_types: dict[str, Any] = {}
        for name, value, is_block, kind, storage in _attrs_of(attrs_body):
            camel_m = _CAMEL_IN_VALUE.search(value)
            camel = camel_m.group(1) if camel_m else name
            optional, is_array = props.get(camel, (True, False))
            if is_block:
                fn_m = _FN_IN_VALUE.search(value)
                if fn_m is None or depth > 12:
                    continue
                fn = fn_m.group(1)
                nested = self.block(self.functions.get(fn, ""), _pascal(fn), depth + 1)
                entry: dict[str, Any] = {
                    "nesting_mode": "set" if kind == "set" else "list",
                    "block": nested,
                }
                if not is_array:
                    entry["max_items"] = 1
                if not optional:
                    entry["min_items"] = 1
                block_types[name] = entry
            else:
                ctype = _SIMPLE.get(storage)
                if ctype is None:
                    ctype = ["list", "string"] if kind in ("list", "set") else "dynamic"
                if kind == "set" and isinstance(ctype, list) and ctype[0] == "list":
                    ctype = ["set", ctype[1]]
                entry = {"type": ctype}
                if optional:
                    entry["optional"] = True
                else:
                    entry["required"] = True
                attributes[name] = entry
        out: dict[str, Any] = {}
        if attributes:
            out["attributes"] = attributes
        if block_types:
            out["block_types"] = block_types
        return out


def _class_body(js: str, start: int) -> str:
    end = js.find("\nexports.", start)
    nxt = _CLASS.search(js, start + 10)
    if nxt is not None and (end < 0 or nxt.start() < end):
        end = nxt.start()
    return js[start:end]


def extract(lib: Path) -> dict[str, Any]:
    schema: dict[str, Any] = {"provider": None, "resource_schemas": {}, "data_source_schemas": {}}
    for index in sorted(lib.glob("*/index.js")):
        js = index.read_text()
        dts = (index.parent / "index.d.ts").read_text()
        module = None
        for m in _CLASS.finditer(js):
            body = _class_body(js, m.start())
            if module is None:
                module = _Module(js, dts)
            synth = body.find("synthesizeHclAttributes()")
            block = module.block(body[synth:], f"{m.group(1)}Config")
            if m.group(2) == "TerraformProvider":
                schema["provider"] = {"version": 0, "block": block}
                continue
            type_m = _TYPE.search(body)
            if type_m is None:
                continue
            attributes = block.setdefault("attributes", {})
            for g in _GETTER.finditer(body):
                snake, kind = g.group(3), g.group(2)
                if snake not in attributes:
                    attributes[snake] = {
                        "type": _GETTER_TYPES.get(kind, "dynamic"),
                        "computed": True,
                    }
                elif attributes[snake].get("optional"):
                    attributes[snake]["computed"] = True
            for g in _COMPLEX_GETTER.finditer(body):
                snake = g.group(2)
                if snake not in attributes and snake not in block.get("block_types", {}):
                    attributes[snake] = {"type": "dynamic", "computed": True}
            attributes.setdefault("id", {"type": "string", "optional": True, "computed": True})
            kind = (
                "resource_schemas" if m.group(2) == "TerraformResource" else "data_source_schemas"
            )
            schema[kind][type_m.group(1)] = {"version": 0, "block": block}
    return schema


def provider_version(lib: Path, name: str) -> str:
    """The provider version the bindings were generated from, as their docs links name it."""
    pattern = re.compile(
        rf"registry\.terraform\.io/providers/hashicorp/{name}/([0-9]+\.[0-9]+\.[0-9]+)/"
    )
    for dts in lib.glob("*/index.d.ts"):
        m = pattern.search(dts.read_text())
        if m:
            return m.group(1)
    raise SystemExit(f"cannot find the {name} provider version in {lib}")


def package_dir(package: str) -> Path:
    """Where a package is installed, without importing it (it needs the jsii runtime)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def main(argv: list[str]) -> int:
    package, name, out = argv[1], argv[2], Path(argv[3])
    root = package_dir(package)
    bundle = next((root / "_jsii").glob("*.jsii.tgz"))
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(bundle) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.endswith(("index.js", "index.d.ts")) and "/lib/" in m.name
            ]
            tar.extractall(tmp, members=members, filter="data")
        lib = Path(tmp) / "package" / "lib"
        schema = extract(lib)
        version = provider_version(lib, name)
    dist = package.replace("_", "-")
    document = {
        "format_version": "1.0",
        "provider": f"registry.terraform.io/hashicorp/{name}",
        "version": version,
        "source_package": f"{dist}=={importlib.metadata.version(dist)}",
        "schema": schema,
    }
    with gzip.open(out, "wt", encoding="utf-8") as f:
        json.dump(document, f, separators=(",", ":"), sort_keys=True)
    print(
        f"{name} {version}: {len(schema['resource_schemas'])} resources, "
        f"{len(schema['data_source_schemas'])} data sources -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
