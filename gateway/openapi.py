"""One OpenAPI document for the whole public API, merged from every service's own document.

Only operations the route table sends to that service are kept, so internal routes and
paths another service owns never leak into the public document.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from typing import Any

import aiohttp

from gateway.routes import RouteTable

logger = logging.getLogger("gateway.openapi")
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[-1]
                out[key] = f"#/components/schemas/{renames.get(name, name)}"
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, renames) for item in node]
    return node


# What the gateway itself may answer on any forwarded route.
_GATEWAY_FAILURES = {
    "502": "`upstream_unavailable`: the service broke the connection (from the gateway)",
    "503": "`upstream_unavailable`: the service is down (from the gateway)",
    "504": "`upstream_timeout`: the service did not answer in time (from the gateway)",
}
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def _add_problem(responses: dict[str, Any], status: str, description: str) -> None:
    responses.setdefault(status, {
        "description": description,
        "content": {"application/problem+json": {
            "schema": {"$ref": "#/components/schemas/GatewayProblem"}}},
    })


def merge_documents(documents: dict[str, dict[str, Any]], table: RouteTable, *,
                    title: str, version: str) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
    schemas: dict[str, Any] = merged["components"]["schemas"]
    schemas["GatewayProblem"] = _PROBLEM_SCHEMA
    for service, document in sorted(documents.items()):
        renames: dict[str, str] = {}
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                renames[name] = f"{service}_{name}"
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = _rewrite_refs(schema, renames)
        for path, item in document.get("paths", {}).items():
            for method in _METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                match = table.match(method.upper(), path)
                if match is None or match.route.service != service:
                    continue
                operation = _rewrite_refs(copy.deepcopy(operation), renames)
                operation.setdefault("tags", [service])
                responses = operation.setdefault("responses", {})
                if not match.public:
                    operation["security"] = [{"bearer": []}]
                    _add_problem(responses, "401", "`missing_token`, `invalid_token`, "
                                 "`token_expired`, `token_revoked` (from the gateway)")
                if "{" in path:
                    # The route table refuses a parameter an upstream could read as another
                    # path (control characters, encoded slashes, dot segments) before any service.
                    _add_problem(responses, "404", "`not_found`: a path parameter the gateway "
                                 "does not route (from the gateway)")
                if "requestBody" in operation:
                    _add_problem(responses, "413", "`payload_too_large` (from the gateway)")
                    _add_problem(responses, "408", "`request_timeout`: the body did not arrive "
                                 "in time (from the gateway)")
                for status, text in _GATEWAY_FAILURES.items():
                    _add_problem(responses, status, text)
                merged["paths"].setdefault(path, {})[method] = operation
    return merged


class OpenApiAggregator:
    def __init__(self, table: RouteTable, base_urls: dict[str, str], *, cache_seconds: float,
                 title: str, version: str) -> None:
        self.table = table
        self.base_urls = base_urls
        self.cache_seconds = cache_seconds
        self.title = title
        self.version = version
        self._cached: bytes | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self, sessions: dict[str, aiohttp.ClientSession]) -> bytes:
        async with self._lock:
            if self._cached is None or time.monotonic() - self._cached_at > self.cache_seconds:
                documents = await self._fetch_all(sessions)
                merged = merge_documents(documents, self.table, title=self.title,
                                         version=self.version)
                self._cached = json.dumps(merged).encode()
                # A document missing a service is kept only briefly, so it fills in once it is up.
                fresh = len(documents) == len(self.base_urls)
                self._cached_at = time.monotonic() - (0 if fresh else self.cache_seconds * 0.9)
            return self._cached

    async def _fetch_all(self, sessions: dict[str, aiohttp.ClientSession]) -> dict[str, dict[str, Any]]:
        async def fetch(service: str) -> tuple[str, dict[str, Any] | None]:
            try:
                async with sessions[service].get(f"{self.base_urls[service]}/openapi.json",
                                                 timeout=aiohttp.ClientTimeout(total=3)) as resp:
                    resp.raise_for_status()
                    return service, await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                logger.warning("openapi fetch failed", extra={"upstream": service, "error": repr(exc)})
                return service, None

        results = await asyncio.gather(*(fetch(name) for name in self.base_urls))
        return {name: doc for name, doc in results if doc is not None}
