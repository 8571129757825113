"""The API's routers, one per resource, each carrying its prefix (a contract path); the app
includes them in this order."""

from fastapi import APIRouter

from api.routes import collections, duplicates, health, jobs, kits, meta, uploads, versions

ROUTERS: tuple[APIRouter, ...] = (
    uploads.router,
    jobs.router,
    duplicates.router,
    collections.router,
    versions.router,
    kits.router,
    meta.router,
    health.router,
)
