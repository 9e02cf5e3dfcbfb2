"""The JetStream object store buckets holding the channel images and emotes: created when missing, an
object written before the row that names it, and deleted once no row names it any more."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.object_store import ObjectStore

from libs.bus import ServiceUnavailable
from libs.obs.logging import get_logger

__all__ = ["drop_objects", "ensure_bucket", "put_objects"]

log = get_logger("channel")


async def ensure_bucket(js: JetStreamContext, bucket: str, *, description: str, replicas: int) -> ObjectStore:
    """An object store bucket, created when missing (replicas may race: fine)."""
    try:
        return await js.object_store(bucket)
    except BucketNotFoundError:
        pass
    config = ObjectStoreConfig(description=description, storage=StorageType.FILE, replicas=replicas)
    try:
        store = await js.create_object_store(bucket, config=config)
    except BadRequestError:  # another replica created it between our two calls
        return await js.object_store(bucket)
    log.info("object_store_created", bucket=bucket)
    return store


async def put_objects(bucket: ObjectStore, objects: Mapping[str, bytes]) -> None:
    """Store each object under its name, or ServiceUnavailable when the store is not reachable (no row
    names them yet, so a partial write is harmless)."""
    for name, data in objects.items():
        try:
            await bucket.put(name, data)
        except (NatsError, TimeoutError) as exc:
            log.warning("image_store_failed", object=name, error=str(exc))
            raise ServiceUnavailable(
                "the image store is not reachable; try again", code="image_store"
            ) from None


async def drop_objects(bucket: ObjectStore, names: Iterable[str]) -> None:
    """Delete objects no row names any more; a failure is logged and leaves an orphan of a few KB."""
    for name in names:
        try:
            await bucket.delete(name)
        except Exception as exc:  # the change that stopped naming it has succeeded; only bytes are left
            log.warning("image_not_deleted", object=name, error=str(exc))
