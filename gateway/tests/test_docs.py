"""The documents under docs/ say what the code does: docs/api.md names every route of the merged
OpenAPI document and no other, and docs/configuration.md names every setting by its variable."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from gateway.openapi import merge_documents
from gateway.routes import RouteTable
from shared.services import GATEWAY, SERVICES

DOCS = Path(__file__).resolve().parents[2] / "docs"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# A route named in full: `GET /api/v1/products/{id}` (prose may shorten a path; that is not a name).
NAMED_ROUTE = re.compile(
    rf"`({'|'.join(METHODS)}) (/(?:api|\.well-known)/[^`\s]*|/healthz|/readyz|/openapi\.json|/docs)`")
# Answered by the gateway itself, not part of the merged document.
GATEWAY_OWN = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json"), ("GET", "/docs")}


def shape(method: str, path: str) -> tuple[str, str]:
    """Parameter names differ between prose ({id}) and code ({product_id}); the shape does not."""
    return method.upper(), re.sub(r"\{[^}]*\}", "{}", path)


def merged_document() -> dict[str, Any]:
    """What the gateway's /openapi.json serves, built from each service's own document."""
    documents = {app.name: importlib.import_module(f"{app.package}.app").create_app().openapi()
                 for app in SERVICES}
    return merge_documents(documents, RouteTable(), title="Preorder API", version="test")


def test_api_md_names_every_public_route_and_no_other() -> None:
    named = {shape(method, path) for method, path in NAMED_ROUTE.findall(
        (DOCS / "api.md").read_text())}
    served = {shape(method, path) for path, item in merged_document()["paths"].items()
              for method in item if method.upper() in METHODS}
    own = {shape(*route) for route in GATEWAY_OWN}
    assert sorted(served - named) == [], "routes in the OpenAPI document that docs/api.md omits"
    assert sorted(named - served - own) == [], "routes docs/api.md names that do not exist"


def settings_classes() -> list[type[BaseSettings]]:
    return [importlib.import_module(f"{app.package}.settings").Settings
            for app in (GATEWAY, *SERVICES)]


def variable_names(settings: type[BaseSettings]) -> set[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.add(str(alias.choices[0]))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


@pytest.mark.parametrize("settings", settings_classes(), ids=lambda cls: cls.__module__)
def test_configuration_md_names_every_setting(settings: type[BaseSettings]) -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = sorted(name for name in variable_names(settings) if f"`{name}`" not in text)
    assert missing == []


def test_the_checks_above_can_fail() -> None:
    assert shape("get", "/api/v1/products/{product_id}") == ("GET", "/api/v1/products/{}")
    assert "USER_JWT_PRIVATE_KEY" in variable_names(settings_classes()[1])


def test_env_example_sets_only_variables_something_reads() -> None:
    compose = (DOCS.parent / "docker-compose.yml").read_text()
    known = set().union(*(variable_names(s) for s in settings_classes()))
    example = (DOCS.parent / ".env.example").read_text()
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE)
    assert "IDENTITY_PUBLIC_KEYS" in names
    unknown = [n for n in names if n not in known and f"${{{n}" not in compose]
    assert unknown == []


def test_every_example_in_the_openapi_document_fits_its_own_schema() -> None:
    document = merged_document()
    schemas = document["components"]["schemas"]
    with_examples = {name: schema for name, schema in schemas.items() if schema.get("examples")}
    # The first order can be made from /docs alone: its bodies all carry an example.
    assert {"SignupRequest", "LoginRequest", "TokenPair", "ProductCreate", "OrderCreate",
            "OrderOut", "PaymentCreate", "PaymentOut"} <= set(with_examples)
    for name, schema in with_examples.items():
        validator = jsonschema_rs.validator_for({**schema, "components": document["components"]},
                                                validate_formats=True)
        for example in schema["examples"]:
            errors = [error.message for error in validator.iter_errors(example)]
            assert errors == [], name
