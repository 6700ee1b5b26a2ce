"""Signed requests for the benchmarks that call a service directly, as the gateway or a service
would. A signature covers one request (method, path, query, body, the service, a nonce the
service accepts once), so a load generator cannot send one set of headers over and over: wrk is
handed a script holding one signature per request, made before the round starts, each dated
ahead so that the whole round falls inside its age limit.

The processes a benchmark starts get this run's identity keys (IDENTITY_ENVIRONMENT), the
test-only ones of shared.testing.identity, new for every run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from shared.contracts import (
    IDENTITY_CALLER_HEADER,
    IDENTITY_MAX_AGE_SECONDS,
    IDENTITY_SIGNATURE_HEADER,
    REQUEST_ID_HEADER,
)
from shared.testing.identity import TEST_IDENTITY_ENVIRONMENT, signed_now, signer

IDENTITY_ENVIRONMENT = TEST_IDENTITY_ENVIRONMENT
# Rounds of a benchmark that reuses a script must be shorter than this (the signatures' age).
LONGEST_ROUND_SECONDS = IDENTITY_MAX_AGE_SECONDS


def sign(headers: dict[str, str], *, method: str, target: str, body: bytes = b"",
         audience: str) -> dict[str, str]:
    """signed_identity_headers' headers, signed for this one request (aiohttp and httpx outside
    the test clients do not sign at send)."""
    return signed_now(headers, method=method, target=target, body=body, audience=audience)


def presigned_script(path: Path, *, caller: str, audience: str, method: str,
                     targets: list[str], body: bytes = b"", bodies: list[bytes] | None = None,
                     extra_headers: str = "", user_id: str = "", session_id: str = "",
                     threads: int = 2) -> Path:
    """A wrk script sending `method` to each of `targets` once, in order, each request with a
    signature of its own (spread over wrk's `threads`, each thread taking every threads-th);
    with `body`, or each with its own of `bodies`.
    Past the last it starts again: those answer 401, counted as errors. The signatures are dated
    IDENTITY_MAX_AGE_SECONDS - 1 ahead: the script must be run within 2 * that (less the time it
    took to make)."""
    ahead = int(time.time()) + IDENTITY_MAX_AGE_SECONDS - 1
    request_id = "bench-presigned"
    signing = signer(caller)
    started = time.monotonic()
    each = bodies if bodies is not None else [body] * len(targets)
    signatures = [signing.sign(audience=audience, method=method, target=target, body=sent,
                               user_id=user_id, session_id=session_id, request_id=request_id,
                               timestamp=ahead) for target, sent in zip(targets, each, strict=True)]
    if time.monotonic() - started > IDENTITY_MAX_AGE_SECONDS / 2:
        print(f"warning: {len(targets)} signatures took {time.monotonic() - started:.1f} s to "
              "make; late requests of the round may be refused as stale (401)", flush=True)
    lines = ["local targets = {" + ",".join(json.dumps(t) for t in targets) + "}",
             ("local bodies = {" + ",".join(json.dumps(b.decode()) for b in bodies) + "}")
             if bodies is not None else "local bodies = nil",
             "local signatures = {" + ",".join(json.dumps(s) for s in signatures) + "}",
             f"local step = {threads}",
             "local next_id = 0",
             "function setup(thread) thread:set('first', next_id + 1); next_id = next_id + 1 end",
             "local i",
             f'wrk.method = "{method}"',
             f"wrk.body = {json.dumps(body.decode())}" if body else "",
             f'wrk.headers["{IDENTITY_CALLER_HEADER}"] = "{caller}"',
             f'wrk.headers["{REQUEST_ID_HEADER}"] = "{request_id}"',
             extra_headers,
             "function request()",
             "  if i == nil or i > #targets then i = first end",
             f'  wrk.headers["{IDENTITY_SIGNATURE_HEADER}"] = signatures[i]',
             "  local target = targets[i]",
             "  local body = bodies and bodies[i] or nil",
             "  i = i + step",
             "  return wrk.format(nil, target, nil, body)",
             "end"]
    path.write_text("\n".join(lines) + "\n")
    return path
