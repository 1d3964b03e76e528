"""Who did it, recorded after MLflow has parsed the request, whatever the client claims.

The IAP check (`iap_app.py`) verifies the caller and puts a `Member` in a context variable for
the rest of the request. This module enforces that member on MLflow's stores, one level below the
REST handlers: every route that creates or changes an entity, on `/api/2.0`, `/api/3.0`,
`/ajax-api` or anything MLflow adds later, ends in the same store methods, after MLflow has
decoded the body however it likes (a JSON body that is itself a JSON string is decoded twice).
So no body is parsed twice and no encoding can slip past.

- Authorship: runs get `user_id` and the `mlflow.user` tag of the member; experiments,
  registered models (prompts included), model versions and logged models get the `mlflow.user`
  tag; traces get the `mlflow.trace.user` metadata, whether started through the REST API (v3 or
  the legacy v2) or created by spans sent over OTLP. Later writes of `mlflow.user` are dropped
  (the recorded author stays) and deleting it is refused with 403, for everyone.
- Admins: deleting experiments, registered models and model versions, managing webhooks and the
  AI gateway (secrets, endpoints, model definitions, budgets, guardrails) need a member listed
  in ADMIN_EMAILS; everyone else gets 403. With no member at all (a call outside any verified
  request) these are refused too.
- Experiments may only put artifacts under the deployment's own artifact root.

The stores are patched at class level (MLflow's SQLAlchemy tracking and registry stores), so
every caller sees it however it obtained the store. With no member set (AUTH_MODE other than
iap, or the migration job) authorship passes through unchanged.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, PERMISSION_DENIED

IDENTITY_TAG = "mlflow.user"
TRACE_USER_KEY = "mlflow.trace.user"
PROXIED_ARTIFACT_ROOT = "mlflow-artifacts:/"


@dataclass(frozen=True)
class Member:
    email: str
    admin: bool = False


_member: contextvars.ContextVar[Member | None] = contextvars.ContextVar(
    "deployer_member", default=None
)
# Set while one of our wrappers runs: a store method calling another (create_run setting its
# tags, say) must not be judged twice.
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("deployer_inside", default=False)


def current() -> Member | None:
    return _member.get()


@contextmanager
def acting_as(member: Member | None) -> Iterator[None]:
    token = _member.set(member)
    try:
        yield
    finally:
        _member.reset(token)


def set_member(member: Member | None) -> contextvars.Token:
    """For ASGI/WSGI code that cannot use a `with` block around the whole request."""
    return _member.set(member)


def _denied(message: str) -> MlflowException:
    return MlflowException(message, error_code=PERMISSION_DENIED)


def require_admin(action: str) -> None:
    member = current()
    if member is None or not member.admin:
        who = member.email if member else "a caller with no verified identity"
        raise _denied(
            f"{action} is reserved to the deployment's admins and {who} is not one "
            "(the project owner lists admins in web_app_admins)"
        )


def _stamped(tags: Any, tag_class: type, email: str) -> list[Any]:
    kept = [t for t in (tags or []) if getattr(t, "key", None) != IDENTITY_TAG]
    return [*kept, tag_class(IDENTITY_TAG, email)]


def _without_identity(tags: Any) -> list[Any]:
    return [t for t in (tags or []) if getattr(t, "key", None) != IDENTITY_TAG]


Rewrite = Callable[[dict[str, Any], Member | None], bool]


def _wrap(cls: type, name: str, rewrite: Rewrite) -> None:
    """Replace cls.name by a wrapper that lets `rewrite` edit the bound arguments first.

    `rewrite` returns False to skip the call (a dropped write); it raises to refuse it.
    """
    original = getattr(cls, name)
    if getattr(original, "__deployer_wrapped__", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _inside.get():
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        token = _inside.set(True)
        try:
            if rewrite(bound.arguments, current()) is False:
                return None
            return original(*bound.args, **bound.kwargs)
        finally:
            _inside.reset(token)

    wrapper.__deployer_wrapped__ = True  # type: ignore[attr-defined]
    setattr(cls, name, wrapper)


def _stamp_tags(field: str, tag_class: type) -> Rewrite:
    def rewrite(args: dict[str, Any], member: Member | None) -> bool:
        if member is not None:
            args[field] = _stamped(args.get(field), tag_class, member.email)
        return True

    return rewrite


def _drop_identity_tag(field: str) -> Rewrite:
    """`field` holds one tag: a write of mlflow.user is dropped, the author stays."""

    def rewrite(args: dict[str, Any], member: Member | None) -> bool:
        return getattr(args.get(field), "key", None) != IDENTITY_TAG

    return rewrite


def _filter_identity_tags(field: str) -> Rewrite:
    def rewrite(args: dict[str, Any], member: Member | None) -> bool:
        if args.get(field):
            args[field] = _without_identity(args[field])
        return True

    return rewrite


def _refuse_identity_delete(field: str) -> Rewrite:
    def rewrite(args: dict[str, Any], member: Member | None) -> bool:
        if args.get(field) == IDENTITY_TAG:
            raise _denied(f"the {IDENTITY_TAG} tag records who created this and cannot be deleted")
        return True

    return rewrite


def _admin_only(action: str) -> Rewrite:
    def rewrite(args: dict[str, Any], member: Member | None) -> bool:
        require_admin(action)
        return True

    return rewrite


def artifact_location_allowed(location: str, roots: tuple[str, ...]) -> bool:
    """True when `location` lies under one of `roots` (same scheme and bucket, no `..`)."""
    loc = urlsplit(location)
    if any(part in ("..", ".") for part in loc.path.split("/")):
        return False
    for root in roots:
        base = urlsplit(root)
        prefix = base.path.rstrip("/") + "/"
        if (loc.scheme, loc.netloc) == (base.scheme, base.netloc) and (
            loc.path.rstrip("/") == base.path.rstrip("/") or loc.path.startswith(prefix)
        ):
            return True
    return False


def _artifact_location_within(roots: tuple[str, ...]) -> Rewrite:
    def rewrite(args: dict[str, Any], member: Member | None) -> bool:
        location = args.get("artifact_location")
        if location and not artifact_location_allowed(str(location), roots):
            raise MlflowException(
                f"artifact_location {location!r} is outside this deployment's artifact root: "
                f"leave it empty, or use a location under {' or '.join(roots)}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return True

    return rewrite


def _stamp_run(args: dict[str, Any], member: Member | None) -> bool:
    from mlflow.entities import RunTag

    if member is not None:
        args["user_id"] = member.email
        args["tags"] = _stamped(args.get("tags"), RunTag, member.email)
    return True


def _stamp_trace(args: dict[str, Any], member: Member | None) -> bool:
    trace_info = args.get("trace_info")
    if member is not None and trace_info is not None:
        trace_info.trace_metadata[TRACE_USER_KEY] = member.email
    return True


def _stamp_trace_v2(args: dict[str, Any], member: Member | None) -> bool:
    """MLflow's legacy (v2) trace start takes the user from its request metadata."""
    if member is not None:
        metadata = dict(args.get("request_metadata") or {})
        metadata[TRACE_USER_KEY] = member.email
        args["request_metadata"] = metadata
    return True


def _keep_trace_user(args: dict[str, Any], member: Member | None) -> bool:
    """Ending a legacy (v2) trace must not rewrite who started it."""
    metadata = args.get("request_metadata")
    if metadata and TRACE_USER_KEY in metadata:
        args["request_metadata"] = {k: v for k, v in metadata.items() if k != TRACE_USER_KEY}
    return True


def _existing_trace_ids(store: Any, trace_ids: list[str]) -> set[str]:
    from mlflow.store.tracking.dbmodels.models import SqlTraceInfo

    with store.ManagedSessionMaker() as session:
        rows = session.query(SqlTraceInfo.request_id).filter(SqlTraceInfo.request_id.in_(trace_ids))
        return {row[0] for row in rows}


def _record_trace_author(store: Any, trace_ids: list[str], email: str) -> None:
    from mlflow.store.tracking.dbmodels.models import SqlTraceMetadata

    with store.ManagedSessionMaker(read_only=False) as session:
        for trace_id in sorted(trace_ids):  # sorted, as MLflow does, so writers cannot deadlock
            session.merge(SqlTraceMetadata(request_id=trace_id, key=TRACE_USER_KEY, value=email))


def _wrap_log_spans(cls: type) -> None:
    """Spans that create their trace (OTLP ingest, `POST /v1/traces`) make it the member's.

    MLflow's `log_spans` creates a missing trace and takes its user from the spans' `user.id`
    attribute: whatever a client claims. Traces that existed before keep their recorded user
    (start_trace stamped it); the ones this call created get the verified member.
    """
    original = cls.log_spans
    if getattr(original, "__deployer_wrapped__", False):
        return

    @functools.wraps(original)
    def log_spans(self: Any, location: str, spans: list[Any], *args: Any, **kwargs: Any) -> Any:
        member = current()
        if member is None or _inside.get() or not spans:
            return original(self, location, spans, *args, **kwargs)
        trace_ids = sorted({span.trace_id for span in spans})
        existed = _existing_trace_ids(self, trace_ids)
        logged = original(self, location, spans, *args, **kwargs)
        created = _existing_trace_ids(self, trace_ids) - existed
        if created:
            _record_trace_author(self, sorted(created), member.email)
        return logged

    log_spans.__deployer_wrapped__ = True  # type: ignore[attr-defined]
    cls.log_spans = log_spans


def _both(*rewrites: Rewrite) -> Rewrite:
    def rewrite(args: dict[str, Any], member: Member | None) -> bool:
        return all(r(args, member) is not False for r in rewrites)

    return rewrite


def _gateway_management_methods() -> list[str]:
    from mlflow.store.tracking.gateway.abstract_mixin import GatewayStoreMixin

    verbs = ("create_", "update_", "delete_", "attach_", "detach_", "add_", "remove_", "set_")
    return sorted(n for n in vars(GatewayStoreMixin) if n.startswith(verbs))


def install_on_tracking_store(cls: type, artifact_roots: tuple[str, ...]) -> None:
    from mlflow.entities import ExperimentTag, LoggedModelTag

    _wrap(
        cls,
        "create_experiment",
        _both(_artifact_location_within(artifact_roots), _stamp_tags("tags", ExperimentTag)),
    )
    _wrap(cls, "set_experiment_tag", _drop_identity_tag("tag"))
    _wrap(cls, "delete_experiment_tag", _refuse_identity_delete("key"))
    _wrap(cls, "delete_experiment", _admin_only("deleting an experiment"))
    _wrap(cls, "create_run", _stamp_run)
    _wrap(cls, "set_tag", _drop_identity_tag("tag"))
    _wrap(cls, "log_batch", _filter_identity_tags("tags"))
    _wrap(cls, "delete_tag", _refuse_identity_delete("key"))
    _wrap(cls, "create_logged_model", _stamp_tags("tags", LoggedModelTag))
    _wrap(cls, "set_logged_model_tags", _filter_identity_tags("tags"))
    _wrap(cls, "delete_logged_model_tag", _refuse_identity_delete("key"))
    _wrap(cls, "start_trace", _stamp_trace)
    _wrap(cls, "deprecated_start_trace_v2", _stamp_trace_v2)
    _wrap(cls, "deprecated_end_trace_v2", _keep_trace_user)
    _wrap_log_spans(cls)
    for name in _gateway_management_methods():
        if hasattr(cls, name):
            _wrap(cls, name, _admin_only("managing the AI gateway"))


def install_on_registry_store(cls: type) -> None:
    from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag

    _wrap(cls, "create_registered_model", _stamp_tags("tags", RegisteredModelTag))
    _wrap(cls, "set_registered_model_tag", _drop_identity_tag("tag"))
    _wrap(cls, "delete_registered_model_tag", _refuse_identity_delete("key"))
    _wrap(cls, "delete_registered_model", _admin_only("deleting a registered model"))
    _wrap(cls, "create_model_version", _stamp_tags("tags", ModelVersionTag))
    _wrap(cls, "set_model_version_tag", _drop_identity_tag("tag"))
    _wrap(cls, "delete_model_version_tag", _refuse_identity_delete("key"))
    _wrap(cls, "delete_model_version", _admin_only("deleting a model version"))
    for name in ("create_webhook", "update_webhook", "delete_webhook", "test_webhook"):
        _wrap(cls, name, _admin_only("managing webhooks"))


def install(artifacts_destination: str) -> None:
    """Enforce authorship and admin rules on MLflow's SQL stores in this server process."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    roots = (PROXIED_ARTIFACT_ROOT, artifacts_destination)
    install_on_tracking_store(TrackingStore, roots)
    install_on_registry_store(RegistryStore)


# Cloud Run's own cap on HTTP/1 request bodies; bodies of MLflow's API calls never come close.
MAX_API_BODY_BYTES = 32 * 1024 * 1024
_API_PREFIXES = ("/api/", "/ajax-api/")


def _is_api_call(path: str) -> bool:
    """MLflow's REST API, but not the proxied artifact transfers under `mlflow-artifacts/`."""
    return path.startswith(_API_PREFIXES) and "/mlflow-artifacts/" not in path


def _before_request() -> None:
    from flask import g, request

    member = current()
    if member is not None:
        # MLflow reads this where its own auth app would have put the user (jobs' creator,
        # review queues' owner).
        g.mlflow_authenticated_user = member.email
    if _is_api_call(request.path):
        request.max_content_length = MAX_API_BODY_BYTES


def _json_object_only(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def normalized(*args: Any, **kwargs: Any) -> Any:
        try:
            body = original(*args, **kwargs)
        except ValueError:  # a JSON string whose text is not JSON: MLflow itself answers 500
            body = None
        if not isinstance(body, dict):
            raise MlflowException(
                "the request body must be a JSON object"
                + (f", not {type(body).__name__}" if body is not None else ""),
                error_code=INVALID_PARAMETER_VALUE,
            )
        return body

    normalized.__deployer_wrapped__ = True  # type: ignore[attr-defined]
    return normalized


def install_flask_hooks(flask_app: Any) -> None:
    """Stamp `g`, cap API bodies, and refuse bodies that are not JSON objects (400)."""
    from mlflow.server import handlers

    flask_app.before_request(_before_request)
    original = handlers._get_normalized_request_json
    if not getattr(original, "__deployer_wrapped__", False):
        handlers._get_normalized_request_json = _json_object_only(original)
