"""The route table orders itself most specific first and refuses path tricks."""

from __future__ import annotations

import pytest

from gateway.routes import ROUTES, Route, RouteTable, is_routable


def test_specific_patterns_win_regardless_of_declaration_order() -> None:
    table = RouteTable((Route("/api/v1/users/**", "user"), Route("/api/v1/users/{id}/followers", "social")))
    match = table.match("GET", "/api/v1/users/5/followers")
    assert match is not None
    assert match.route.service == "social"
    match = table.match("GET", "/api/v1/users/5/followers/extra")
    assert match is not None
    assert match.route.service == "user"


def test_public_is_per_method() -> None:
    table = RouteTable(ROUTES)
    get = table.match("GET", "/api/v1/products/1")
    patch = table.match("PATCH", "/api/v1/products/1")
    assert get is not None
    assert get.public
    assert patch is not None
    assert not patch.public


@pytest.mark.parametrize("path", [
    "/internal/x", "/INTERNAL/x", "/api/v1/users/../internal", "/api/v1/users/./me",
    "/api/v1/users/%2E%2E/x", "/api/v1//users", "/api/v1/users/a%2fb", "/api/v1/users\\x",
])
def test_path_tricks_are_not_routable(path: str) -> None:
    assert not is_routable(path)
    assert RouteTable().match("GET", path) is None


def test_every_service_owns_some_route() -> None:
    assert {route.service for route in ROUTES} == {"user", "product", "order", "payment", "stock", "social"}


@pytest.mark.parametrize("raw_path", ["/api/v1/auth/login%0A", "/api/v1/auth/login%0a",
                                      "/api/v1/auth/login\n", "/api/v1/auth/login%00"])
def test_a_public_route_is_matched_exactly(raw_path: str) -> None:
    # `$` matched before a trailing newline: the decoded "/api/v1/auth/login\n" was the
    # public login route, though no upstream route has that path.
    match = RouteTable().match("POST", raw_path)
    assert match is None or not match.public


@pytest.mark.parametrize("raw_path", ["/api/v1/users/a%2Fb", "/api/v1/users/a%5cb",
                                      "/api/v1/users/%2e%2e/internal"])
def test_encoded_slashes_and_dots_are_refused_in_the_raw_path(raw_path: str) -> None:
    assert RouteTable().match("GET", raw_path) is None


def test_a_literal_segment_spelt_with_escapes_matches_nothing_public() -> None:
    match = RouteTable().match("POST", "/api/v1/auth/log%69n")
    assert match is not None
    assert (match.route.pattern, match.public) == ("/api/v1/auth/**", False)
