"""make bench's safeguards: a round whose answers were refusals yields no ratio, and the direct
leg's script holds a request per signature, each one the service accepts, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loadtests.bench_gateway import forwarding_env, refusals, refuse_ratios_after_errors
from loadtests.load import LoadResult
from loadtests.signed import presigned_script
from loadtests.system import with_metrics_port
from shared.contracts import IDENTITY_MAX_AGE_SECONDS
from shared.identity_keys import IdentityRefused
from shared.testing.identity import identity_verifier


def result(label: str, good: int, **errors: int) -> LoadResult:
    return LoadResult(label, good, sum(errors.values()), 10.0, [],
                      {kind.replace("_", "-"): n for kind, n in errors.items()})


def test_a_leg_with_non_2xx_answers_leaves_the_bench_without_ratios(
        capsys: pytest.CaptureFixture[str]) -> None:
    results = {"hello-world": [result("h1", 100_000), result("h2", 90_000)],
               "direct /users/me": [result("d1", 5_000), result("d2", 1_000, non_2xx=20_000)]}
    assert refusals(results) == ["direct /users/me: 20,000 non-2xx"]
    with pytest.raises(SystemExit) as exited:
        refuse_ratios_after_errors(results)
    assert exited.value.code == 1
    assert "no ratios" in capsys.readouterr().out


def test_clean_legs_leave_the_ratios_to_be_printed() -> None:
    results = {"hello-world": [result("h1", 100_000)], "gateway": [result("g1", 10_000)]}
    assert refusals(results) == []
    refuse_ratios_after_errors(results)


def test_socket_errors_are_refused_too() -> None:
    assert refusals({"gateway": [result("g1", 10, socket=3)]}) == ["gateway: 3 socket"]


def test_the_direct_script_holds_one_fresh_signature_per_request(tmp_path: Path) -> None:
    """Every request of the script checks out once at the service it names, for the round's
    whole length: the first at its start, the last at its end."""
    seconds = 10.0
    script = presigned_script(tmp_path / "direct.lua", caller="gateway", audience="user_service",
                              method="GET", targets=["/api/v1/users/me"] * 200, user_id="7",
                              session_id="s" * 32, spread_seconds=seconds)
    assert "io.lines" in script.read_text()
    lines = script.with_suffix(".requests").read_text().splitlines()
    assert len(lines) == 200
    verifier = identity_verifier("user_service")
    headers = {"x-identity-caller": "gateway", "x-user-id": "7", "x-session-id": "s" * 32,
               "x-request-id": "bench-presigned"}
    started = time.time()
    for index, line in enumerate(lines):
        target, signature, body = line.split("\t")
        assert (target, body) == ("/api/v1/users/me", "")
        sent_at = started + seconds * index / len(lines)
        verifier.verify(signature, headers, method="GET", target=target, body=b"", now=sent_at)
        with pytest.raises(IdentityRefused, match="replayed"):
            verifier.verify(signature, headers, method="GET", target=target, body=b"",
                            now=sent_at)
    # Made just now, the last is still good a whole round after the round's end.
    last = lines[-1].split("\t")[1]
    fresh = identity_verifier("user_service")
    fresh.verify(last, headers, method="GET", target="/api/v1/users/me", body=b"",
                 now=started + seconds + IDENTITY_MAX_AGE_SECONDS - 1)


def test_the_sold_out_benchs_second_gateway_listens_for_metrics_on_a_port_of_its_own() -> None:
    """It copied the first gateway's environment, GATEWAY_METRICS_PORT included, and exited at
    start: the port was the first's."""
    first = with_metrics_port({"GATEWAY_REDIS_URL": "redis://x", "PUBSUB_PREFIX": "bench-edge:"})
    second = forwarding_env(first)
    assert second["GATEWAY_METRICS_PORT"] != first["GATEWAY_METRICS_PORT"]
    assert second["PUBSUB_PREFIX"] == "bench-deaf:"
    assert second["GATEWAY_REDIS_URL"] == first["GATEWAY_REDIS_URL"]
