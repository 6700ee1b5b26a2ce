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
                     threads: int = 2, spread_seconds: float = 0.0) -> Path:
    """A wrk script sending `method` to each of `targets` once, in order, each request with a
    signature of its own (spread over wrk's `threads`, each thread taking every threads-th);
    with `body`, or each with its own of `bodies`. The requests are kept in a file beside the
    script (`path` with the suffix .requests), which each wrk thread reads when it starts: a
    Lua table constructor of that many strings would be too large for LuaJIT.
    Past the last it starts again: those answer 401 (a nonce is taken once), counted as non-2xx.
    The signatures are dated IDENTITY_MAX_AGE_SECONDS - 1 ahead, the n-th of them n / len(targets)
    * `spread_seconds` later still (a round sends them in order: give it the round's length),
    so the script must be run within 2 * IDENTITY_MAX_AGE_SECONDS - 1 of its making."""
    ahead = int(time.time()) + IDENTITY_MAX_AGE_SECONDS - 1
    request_id = "bench-presigned"
    signing = signer(caller)
    started = time.monotonic()
    each = bodies if bodies is not None else [body] * len(targets)
    count = max(1, len(targets))
    requests = []
    for index, (target, sent) in enumerate(zip(targets, each, strict=True)):
        signature = signing.sign(
            audience=audience, method=method, target=target, body=sent, user_id=user_id,
            session_id=session_id, request_id=request_id,
            timestamp=ahead + int(spread_seconds * index / count))
        fields = [target, signature, sent.decode() if bodies is not None else ""]
        if any("\t" in f or "\n" in f for f in fields):
            raise ValueError("a target or body with a tab or a newline cannot be scripted")
        requests.append("\t".join(fields))
    took = time.monotonic() - started
    if took > IDENTITY_MAX_AGE_SECONDS / 2:
        print(f"warning: {len(targets)} signatures took {took:.1f} s to make; late requests of "
              "the round may be refused as stale (401)", flush=True)
    data = path.with_suffix(".requests")
    data.write_text("\n".join(requests) + "\n")
    lines = [f"local data = {json.dumps(str(data))}",
             "local targets, signatures, bodies = {}, {}, {}",
             f"local step = {threads}",
             "local next_id = 0",
             "function setup(thread) thread:set('first', next_id + 1); next_id = next_id + 1 end",
             "local function load()",
             "  local line_number = 0",
             "  for line in io.lines(data) do",
             "    line_number = line_number + 1",
             "    if (line_number - first) % step == 0 then",
             "      local target, signature, sent = line:match('^([^\\t]*)\\t([^\\t]*)\\t(.*)$')",
             "      targets[#targets + 1] = target",
             "      signatures[#signatures + 1] = signature",
             "      bodies[#bodies + 1] = sent",
             "    end",
             "  end",
             "end",
             "local i",
             f'wrk.method = "{method}"',
             f"wrk.body = {json.dumps(body.decode())}" if body else "",
             f'wrk.headers["{IDENTITY_CALLER_HEADER}"] = "{caller}"',
             f'wrk.headers["{REQUEST_ID_HEADER}"] = "{request_id}"',
             extra_headers,
             "function request()",
             "  if i == nil then load() end",
             "  if i == nil or i > #targets then i = 1 end",
             f'  wrk.headers["{IDENTITY_SIGNATURE_HEADER}"] = signatures[i]',
             "  local target = targets[i]",
             f"  local body = {'bodies[i]' if bodies is not None else 'nil'}",
             "  i = i + 1",
             "  return wrk.format(nil, target, nil, body)",
             "end"]
    path.write_text("\n".join(lines) + "\n")
    return path
