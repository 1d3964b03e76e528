"""A Terraform provider that serves a real provider's schema; with TWIN_DIR set, it also plans,
applies, reads and imports against the local GCP twin (tests/twin/).

The google and random providers cannot be downloaded here, but their schemas can be extracted
from PyPI (see schema/extract_cdktn.py). This plugin-protocol-6 server answers Terraform with
that schema, so the real `terraform validate` checks our configuration against the provider's
true argument names, required arguments, block shapes and types, and `terraform test` can mock
it. It cannot check the provider's own value rules (enums, conflicts): those need Google.

Terraform starts it through a CLI config `dev_overrides` entry pointing at a folder holding an
executable `terraform-provider-NAME` (tfcheck.py writes that launcher). The go-plugin handshake
and the protocol stubs come from the PyPI package `tf`.

    python stand_in_provider.py SCHEMA.json.gz

Twin mode (TWIN_DIR and TWIN_PYTHON set): every resource call is forwarded, as one JSON line, to
a worker process `TWIN_PYTHON -m tests.twin.cloud` that holds the twin's behaviour. The worker
runs in the project's own venv (PostgreSQL, podman, GCS emulator clients); this process only
speaks the plugin protocol and msgpack, in the venv with `tf` (which pins protobuf < 6).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc

_NESTING = {
    "single": pb.Schema.NestedBlock.SINGLE,
    "list": pb.Schema.NestedBlock.LIST,
    "set": pb.Schema.NestedBlock.SET,
    "map": pb.Schema.NestedBlock.MAP,
}


def _block(doc: dict[str, Any]) -> pb.Schema.Block:
    attributes = [
        pb.Schema.Attribute(
            name=name,
            type=json.dumps(a["type"]).encode(),
            required=bool(a.get("required")),
            optional=bool(a.get("optional")),
            computed=bool(a.get("computed")),
            sensitive=bool(a.get("sensitive")),
        )
        for name, a in sorted(doc.get("attributes", {}).items())
    ]
    blocks = [
        pb.Schema.NestedBlock(
            type_name=name,
            block=_block(b.get("block", {})),
            nesting=_NESTING[b.get("nesting_mode", "list")],
            min_items=b.get("min_items", 0),
            max_items=b.get("max_items", 0),
        )
        for name, b in sorted(doc.get("block_types", {}).items())
    ]
    return pb.Schema.Block(attributes=attributes, block_types=blocks)


def _schema(doc: dict[str, Any] | None) -> pb.Schema:
    return pb.Schema(
        version=(doc or {}).get("version", 0), block=_block((doc or {}).get("block", {}))
    )


class SchemaOnlyProvider(rpc.ProviderServicer):
    def __init__(self, document: dict[str, Any]) -> None:
        schema = document["schema"]
        self.provider = _schema(schema.get("provider"))
        self.resources = {k: _schema(v) for k, v in schema["resource_schemas"].items()}
        self.data_sources = {k: _schema(v) for k, v in schema["data_source_schemas"].items()}

    def GetMetadata(self, request, context):
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(plan_destroy=True),
            resources=[pb.GetMetadata.ResourceMetadata(type_name=n) for n in self.resources],
            data_sources=[
                pb.GetMetadata.DataSourceMetadata(type_name=n) for n in self.data_sources
            ],
        )

    def GetProviderSchema(self, request, context):
        return pb.GetProviderSchema.Response(
            provider=self.provider,
            provider_meta=pb.Schema(block=pb.Schema.Block()),
            resource_schemas=self.resources,
            data_source_schemas=self.data_sources,
        )

    def ValidateProviderConfig(self, request, context):
        return pb.ValidateProviderConfig.Response()

    def ValidateResourceConfig(self, request, context):
        return pb.ValidateResourceConfig.Response()

    def ValidateDataResourceConfig(self, request, context):
        return pb.ValidateDataResourceConfig.Response()

    def ConfigureProvider(self, request, context):
        return pb.ConfigureProvider.Response()

    def UpgradeResourceState(self, request, context):
        return pb.UpgradeResourceState.Response(
            upgraded_state=pb.DynamicValue(json=request.raw_state.json)
        )

    def GetFunctions(self, request, context):
        return pb.GetFunctions.Response()

    def StopProvider(self, request, context):
        return pb.StopProvider.Response()


class _Named:
    """What tf.runner asks of a provider object besides the servicer."""

    def __init__(self, name: str) -> None:
        self.name = name

    def full_name(self) -> str:
        return f"registry.terraform.io/hashicorp/{self.name}"


# ----- twin mode ------------------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    """msgpack-decoded value -> JSON, with unknown values (msgpack extension 0, or 12 for a
    refined unknown) kept as {"$unknown": base64} so they round-trip unchanged."""
    import msgpack

    if isinstance(value, msgpack.ExtType):
        return {"$unknown": base64.b64encode(value.data).decode(), "$code": value.code}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    import msgpack

    if isinstance(value, dict):
        if "$unknown" in value:
            return msgpack.ExtType(value.get("$code", 0), base64.b64decode(value["$unknown"]))
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _decode(dv: pb.DynamicValue) -> Any:
    import msgpack

    if dv.json:
        return json.loads(dv.json)
    if not dv.msgpack:
        return None
    return _to_json(msgpack.unpackb(dv.msgpack, raw=False, strict_map_key=False))


def _encode(value: Any) -> pb.DynamicValue:
    import msgpack

    return pb.DynamicValue(msgpack=msgpack.packb(_from_json(value), use_bin_type=False))


def _diagnostics(items: list[dict[str, str]]) -> list[pb.Diagnostic]:
    severity = {"error": pb.Diagnostic.ERROR, "warning": pb.Diagnostic.WARNING}
    return [
        pb.Diagnostic(
            severity=severity[d.get("severity", "error")],
            summary=d.get("summary", ""),
            detail=d.get("detail", ""),
        )
        for d in items
    ]


def _paths(paths: list[str]) -> list[pb.AttributePath]:
    return [pb.AttributePath(steps=[pb.AttributePath.Step(attribute_name=p)]) for p in paths]


class TwinProvider(SchemaOnlyProvider):
    """Forwards resource calls to the twin's worker; the legacy type system flag is what the
    real google provider (SDKv2) sends too, so Terraform judges our plans as it judges its."""

    def __init__(self, document: dict[str, Any], name: str) -> None:
        super().__init__(document)
        self.name = name
        self._lock = threading.Lock()
        self._worker = subprocess.Popen(
            [os.environ["TWIN_PYTHON"], "-m", "tests.twin.cloud", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.environ.get("TWIN_REPO") or None,
        )

    def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        line = json.dumps({"op": op, **fields}) + "\n"
        with self._lock:
            assert self._worker.stdin and self._worker.stdout
            self._worker.stdin.write(line)
            self._worker.stdin.flush()
            answer = self._worker.stdout.readline()
        if not answer:
            return {"diagnostics": [{"summary": "the twin's worker died (see stderr)"}]}
        return json.loads(answer)

    def ConfigureProvider(self, request, context):
        out = self._call("configure", config=_decode(request.config))
        return pb.ConfigureProvider.Response(diagnostics=_diagnostics(out.get("diagnostics", [])))

    def PlanResourceChange(self, request, context):
        out = self._call(
            "plan",
            type=request.type_name,
            prior=_decode(request.prior_state),
            proposed=_decode(request.proposed_new_state),
            config=_decode(request.config),
        )
        return pb.PlanResourceChange.Response(
            planned_state=_encode(out.get("state")),
            requires_replace=_paths(out.get("requires_replace", [])),
            diagnostics=_diagnostics(out.get("diagnostics", [])),
            legacy_type_system=True,
        )

    def ApplyResourceChange(self, request, context):
        out = self._call(
            "apply",
            type=request.type_name,
            prior=_decode(request.prior_state),
            planned=_decode(request.planned_state),
            config=_decode(request.config),
        )
        return pb.ApplyResourceChange.Response(
            new_state=_encode(out.get("state")),
            diagnostics=_diagnostics(out.get("diagnostics", [])),
            legacy_type_system=True,
        )

    def ReadResource(self, request, context):
        out = self._call("read", type=request.type_name, current=_decode(request.current_state))
        return pb.ReadResource.Response(
            new_state=_encode(out.get("state")),
            diagnostics=_diagnostics(out.get("diagnostics", [])),
        )

    def ImportResourceState(self, request, context):
        out = self._call("import", type=request.type_name, id=request.id)
        found = out.get("state")
        return pb.ImportResourceState.Response(
            imported_resources=[
                pb.ImportResourceState.ImportedResource(
                    type_name=request.type_name, state=_encode(found)
                )
            ]
            if found is not None
            else [],
            diagnostics=_diagnostics(out.get("diagnostics", [])),
        )

    def ReadDataSource(self, request, context):
        out = self._call("data", type=request.type_name, config=_decode(request.config))
        return pb.ReadDataSource.Response(
            state=_encode(out.get("state")),
            diagnostics=_diagnostics(out.get("diagnostics", [])),
        )


def main(argv: list[str]) -> None:
    import tf.provider
    from tf.runner import run_provider

    schema_path = Path(argv[1])
    with gzip.open(schema_path, "rt", encoding="utf-8") as f:
        document = json.load(f)
    name = document["provider"].rsplit("/", 1)[-1]
    twin = bool(os.environ.get("TWIN_DIR"))
    # tf.runner builds its servicer from tf.provider.ProviderServicer; ours serves raw schema.
    tf.provider.ProviderServicer = (  # type: ignore[assignment]
        (lambda _provider: TwinProvider(document, name))
        if twin
        else (lambda _provider: SchemaOnlyProvider(document))
    )
    run_provider(_Named(name), argv[:1])


if __name__ == "__main__":
    main(sys.argv)
