"""Brand kits in Redis, per tenant: every PUT adds a version; a deleted kit's versions stay
readable by `name@N`, for the lineage of what was made with them."""

from __future__ import annotations

import time

import redis

from shared import keys
from shared.contract import ErrorCode, Kit, KitBody, parse_kit_ref
from shared.errors import Conflict, NotFound

LATEST = "latest"
DELETED = "deleted"


class KitStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, tenant: str | None, name: str, body: KitBody) -> Kit:
        key = keys.kit(tenant, name)
        if self.redis.hget(key, LATEST) is not None and not self.redis.hget(key, DELETED):
            raise Conflict(ErrorCode.kit_exists, f"kit {name} exists: PUT makes a new version")
        return self._add(tenant, name, body)

    def update(self, tenant: str | None, name: str, body: KitBody) -> Kit:
        self.get(tenant, name)  # 404 for a kit that is not there
        return self._add(tenant, name, body)

    def _add(self, tenant: str | None, name: str, body: KitBody) -> Kit:
        key = keys.kit(tenant, name)
        version = int(self.redis.hincrby(key, LATEST, 1))
        kit = Kit.model_validate(
            {
                "name": name,
                "version": version,
                "created_at": time.time(),
                **body.model_dump(exclude_none=True),
            }
        )
        pipe = self.redis.pipeline()
        pipe.hset(key, str(version), kit.model_dump_json(exclude_none=True))
        pipe.hdel(key, DELETED)
        pipe.sadd(keys.kits(tenant), name)
        pipe.execute()
        return kit

    def get(self, tenant: str | None, ref: str) -> Kit:
        """A kit by `name` (its latest version; 404 once deleted) or `name@N` (any version
        ever made)."""
        name, version = parse_kit_ref(ref)
        key = keys.kit(tenant, name)
        latest, deleted = self.redis.hmget(key, [LATEST, DELETED])
        if latest is None or (version is None and deleted):
            raise NotFound(ErrorCode.kit_not_found, f"no kit {name}")
        raw = self.redis.hget(key, str(version or int(latest)))
        if raw is None:
            raise NotFound(
                ErrorCode.kit_not_found,
                f"kit {name} has no version {version} (latest {int(latest)})",
            )
        kit = Kit.model_validate_json(raw)
        kit.deleted = bool(deleted)
        return kit

    def versions(self, tenant: str | None, name: str) -> list[Kit]:
        latest = self.get(tenant, name).version
        return [self.get(tenant, f"{name}@{v}") for v in range(1, latest + 1)]

    def list(self, tenant: str | None) -> list[Kit]:
        names = sorted(
            n.decode() if isinstance(n, bytes) else n
            for n in self.redis.smembers(keys.kits(tenant))
        )
        return [self.get(tenant, name) for name in names]

    def delete(self, tenant: str | None, name: str) -> None:
        self.get(tenant, name)
        pipe = self.redis.pipeline()
        pipe.hset(keys.kit(tenant, name), DELETED, "1")
        pipe.srem(keys.kits(tenant), name)
        pipe.execute()
