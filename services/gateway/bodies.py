"""HTTP request bodies derived from the proto requests they become, so a field is declared once (in proto).

A route body is usually its proto request minus what the gateway fills in (the signed-in actor, the path's
names, the client address):

    class NewChannel(Body, frozen=True, request=pc.CreateChannel, without=("owner_id", "owner_username")):
        \"\"\"POST /api/v1/channels body.\"\"\"

`NewChannel` then has CreateChannel's other fields (types, defaults, order), refuses unknown fields (a
typo is a 400 naming it, where the proto request would drop it silently), and `body.to(pc.CreateChannel,
owner_id=...)` builds the request. Litestar's OpenAPI sees an ordinary Struct."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

__all__ = ["Body"]

R = TypeVar("R", bound=msgspec.Struct)


class _BodyMeta(msgspec.StructMeta):
    """Copies the fields of `request` (less `without`) into the new body class before msgspec builds it."""

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        /,
        *,
        request: type[msgspec.Struct] | None = None,
        without: tuple[str, ...] = (),
        **config: Any,
    ) -> Any:
        if request is not None:
            fields = {f.name: f for f in msgspec.structs.fields(request)}
            unknown = sorted(set(without) - set(fields))
            if unknown:
                raise TypeError(f"{name}: {request.__name__} has no field {', '.join(unknown)}")
            annotations: dict[str, Any] = {}
            for field in fields.values():
                if field.name in without:
                    continue
                annotations[field.name] = field.type
                if field.default is not msgspec.NODEFAULT:
                    namespace[field.name] = field.default
                elif field.default_factory is not msgspec.NODEFAULT:
                    namespace[field.name] = msgspec.field(default_factory=field.default_factory)
            namespace["__annotations__"] = {**annotations, **namespace.get("__annotations__", {})}
        config.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, namespace, **config)


class Body(msgspec.Struct, metaclass=_BodyMeta, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the derived bodies: frozen, keyword-only, unknown fields refused."""

    if TYPE_CHECKING:

        def __init_subclass__(
            cls, *, request: type[msgspec.Struct] | None = None, without: tuple[str, ...] = (), **config: Any
        ) -> None: ...

    def to(self, request: type[R], **filled: Any) -> R:
        """The proto request: this body's fields plus those the gateway fills in (`filled`)."""
        return request(**filled, **msgspec.structs.asdict(self))
