"""A Terraform provider that serves a real provider's schema and nothing else.

The google and random providers cannot be downloaded here, but their schemas can be extracted
from PyPI (see schema/extract_cdktn.py). This plugin-protocol-6 server answers Terraform with
that schema, so the real `terraform validate` checks our configuration against the provider's
true argument names, required arguments, block shapes and types, and `terraform test` can mock
it. It cannot check the provider's own value rules (enums, conflicts): those need Google.

Terraform starts it through a CLI config `dev_overrides` entry pointing at a folder holding an
executable `terraform-provider-NAME` (tfcheck.py writes that launcher). The go-plugin handshake
and the protocol stubs come from the PyPI package `tf`.

    python stand_in_provider.py SCHEMA.json.gz
"""

from __future__ import annotations

import gzip
import json
import sys
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


def main(argv: list[str]) -> None:
    import tf.provider
    from tf.runner import run_provider

    schema_path = Path(argv[1])
    with gzip.open(schema_path, "rt", encoding="utf-8") as f:
        document = json.load(f)
    # tf.runner builds its servicer from tf.provider.ProviderServicer; ours serves raw schema.
    tf.provider.ProviderServicer = lambda _provider: SchemaOnlyProvider(document)  # type: ignore[assignment]
    name = document["provider"].rsplit("/", 1)[-1]
    run_provider(_Named(name), argv[:1])


if __name__ == "__main__":
    main(sys.argv)
