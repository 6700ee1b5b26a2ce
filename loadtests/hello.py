"""The yardstick: a FastAPI hello-world, served by one uvicorn worker like every service.

Benchmarks start it beside what they measure and report their rates as a share of its rate on
the same machine in the same run, since absolute figures differ threefold between machines.
"""

from __future__ import annotations

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app
