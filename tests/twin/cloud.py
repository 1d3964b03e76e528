"""The twin's provider worker: plans and applies Terraform resources against the twin project.

Started by tests/terraform/stand_in_provider.py in twin mode as `python -m tests.twin.cloud NAME`
(NAME = google or random); reads one JSON request a line on stdin, answers one JSON line.
Values are Terraform's, decoded from msgpack; an unknown value is {"$unknown": ...}.

Planning follows what the SDKv2-based google provider does: the proposed state is the plan;
computed attributes with no value yet are unknown on create; attributes that force a new
resource (ids, names, locations) plan a replacement. Applying runs the resource's behaviour
(tests/twin/resources.py), which may refuse exactly as Google refuses.
"""

from __future__ import annotations

import gzip
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from tests.twin import resources
from tests.twin.resources import CloudError, Context

SCHEMAS = Path(__file__).resolve().parent.parent / "terraform" / "schema"
SCHEMA_FILES = {"google": "google-8.7.0.json.gz", "random": "random-3.9.1.json.gz"}
UNKNOWN = {"$unknown": "AA==", "$code": 0}


def is_unknown(value: Any) -> bool:
    return isinstance(value, dict) and "$unknown" in value


def has_unknown(value: Any) -> bool:
    if is_unknown(value):
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def known_or_none(value: Any) -> Any:
    """Apply-time states may hold no unknowns: what nothing computed becomes null."""
    if is_unknown(value):
        return None
    if isinstance(value, dict):
        return {k: known_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [known_or_none(v) for v in value]
    return value


class Worker:
    def __init__(self, name: str) -> None:
        with gzip.open(SCHEMAS / SCHEMA_FILES[name], "rt", encoding="utf-8") as f:
            schema = json.load(f)["schema"]
        self.resource_schemas = schema["resource_schemas"]
        self.data_schemas = schema["data_source_schemas"]
        self.ctx = Context.from_env()

    def computed(self, kind: str, data: bool = False) -> list[str]:
        schema = (self.data_schemas if data else self.resource_schemas)[kind]
        attrs = schema["block"].get("attributes", {})
        return [n for n, a in attrs.items() if a.get("computed")]

    # ----- the protocol's operations ------------------------------------------------------
    def configure(self, config: dict[str, Any]) -> dict[str, Any]:
        self.ctx.configure(config or {})
        return {}

    def plan(self, kind: str, prior: Any, proposed: Any, config: Any) -> dict[str, Any]:
        if proposed is None:
            return {"state": None}
        planned = dict(proposed)
        behaviour = resources.behaviour(kind)
        computed = self.computed(kind)
        replace: list[str] = []
        if prior is not None:
            # An identifying attribute that changes, or is not known yet, forces a new resource;
            # a computed one left empty in the configuration keeps its value.
            replace = [
                a
                for a in behaviour.force_new
                if a in planned
                and (
                    is_unknown(planned[a])
                    or (planned[a] != prior.get(a) and not (planned[a] is None and a in computed))
                )
            ]
        if prior is None or replace:
            for attr in computed:
                if planned.get(attr) is None:
                    planned[attr] = UNKNOWN
        behaviour.plan(self.ctx, prior, planned)
        planned = {k: planned[k] for k in proposed}  # the schema's attributes, no more
        return {"state": planned, "requires_replace": sorted(set(replace))}

    def apply(self, kind: str, prior: Any, planned: Any, config: Any) -> dict[str, Any]:
        behaviour = resources.behaviour(kind)
        if planned is None:
            behaviour.delete(self.ctx, prior)
            self.ctx.forget(kind, prior)
            return {"state": None}
        # What the plan left unknown is the behaviour's to compute; it starts out empty.
        state = {k: (None if is_unknown(v) else v) for k, v in planned.items()}
        if prior is None:
            behaviour.create(self.ctx, state, config or {})
        else:
            behaviour.update(self.ctx, prior, state, config or {})
        state = known_or_none({k: state[k] for k in planned})
        self.ctx.remember(kind, state)
        return {"state": state}

    def read(self, kind: str, current: Any) -> dict[str, Any]:
        if current is None:
            return {"state": None}
        stored = self.ctx.lookup(kind, current.get("id"))
        if stored is None:
            return {"state": None}  # gone outside Terraform: Terraform plans to create it again
        return {"state": resources.behaviour(kind).refresh(self.ctx, stored)}

    def import_(self, kind: str, ident: str) -> dict[str, Any]:
        stored = self.ctx.lookup(kind, ident) or self.ctx.find(kind, ident)
        if stored is None:
            raise CloudError(
                "Cannot import non-existent remote object",
                f"{kind} {ident!r} does not exist in project {self.ctx.project_id}",
            )
        return {"state": stored}

    def data(self, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        state = dict(config)
        resources.data_source(kind)(self.ctx, state)
        return {"state": known_or_none({k: state[k] for k in config})}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        kind = request.get("type", "")
        try:
            if op == "configure":
                return self.configure(request.get("config"))
            if op == "plan":
                return self.plan(kind, request["prior"], request["proposed"], request["config"])
            if op == "apply":
                return self.apply(kind, request["prior"], request["planned"], request["config"])
            if op == "read":
                return self.read(kind, request["current"])
            if op == "import":
                return self.import_(kind, request["id"])
            if op == "data":
                return self.data(kind, request["config"])
        except CloudError as e:
            state = request.get("prior") if op == "apply" else None
            return {"state": state, "diagnostics": [e.diagnostic()]}
        except Exception as e:  # a bug in the twin: say so loudly, with where
            detail = traceback.format_exc()
            return {"diagnostics": [{"summary": f"twin worker bug: {e!r}", "detail": detail}]}
        return {"diagnostics": [{"summary": f"twin worker: unknown op {op}"}]}


def main(argv: list[str]) -> None:
    answers = sys.stdout
    sys.stdout = sys.stderr  # whatever a behaviour prints must not break the protocol
    worker = Worker(argv[1])
    for line in sys.stdin:
        answer = worker.handle(json.loads(line))
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main(sys.argv)
