"""The AI stand-in over real HTTP: a FastAPI app around `AIBehaviour`, and its runner.

For worker processes and load runs, which reach the AI endpoints by URL from their
settings. A small control API under `/_standin/` lets a process-level test or `harness up`
read calls and change faults without importing anything.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from standins._http_runner import Holds, HttpStandin, ServerThread
from standins.ai.behaviour import AIBehaviour
from standins.ai.endpoints import AIEndpoints
from standins.ai.faults import Fault, FaultProfile

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def create_app(behaviour: AIBehaviour, holds: Holds | None = None) -> FastAPI:
    """ASGI app serving `behaviour`; delays wait on `holds` so shutdown can cut them short."""
    holds = holds or Holds()
    app = FastAPI(title="AI inference stand-in", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/_standin/calls")
    async def list_calls() -> list[dict[str, Any]]:
        return [call.to_dict() for call in behaviour.calls]

    @app.post("/_standin/reset")
    async def reset() -> dict[str, bool]:
        behaviour.reset()
        return {"reset": True}

    @app.put("/_standin/faults")
    async def set_faults(request: Request) -> Response:
        try:
            behaviour.set_faults(FaultProfile.from_dict(await request.json()))
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": "updated"})

    @app.post("/_standin/faults/next")
    async def enqueue_fault(request: Request) -> Response:
        """Body: {"kind": "rate_limit"|"server_error"|..., "model": optional, params...}."""
        try:
            data = dict(await request.json())
            model = data.pop("model", None)
            behaviour.enqueue(Fault(**data), model=model)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"queued": True})

    @app.api_route("/{path:path}", methods=_METHODS)
    async def serve(request: Request, path: str) -> Response:
        body = await request.body()
        reply = behaviour.handle(
            request.method,
            request.url.path,
            dict(request.query_params),
            dict(request.headers),
            body,
        )
        if reply.delay > 0:
            await holds.wait(reply.delay)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    return app


class AIServer(HttpStandin, AIEndpoints):
    """The AI stand-in on `http://127.0.0.1:<free port>`.

    `AIServer(api_key="k")` or `AIServer(AIBehaviour(...))`; use as a context manager.
    Endpoints: `endpoint(model)` (one per deployment), `shared_endpoint` (model in the body),
    `environment()` (the worker settings pointing at them).
    """

    def __init__(
        self,
        behaviour: AIBehaviour | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **behaviour_options: Any,
    ) -> None:
        if behaviour is not None and behaviour_options:
            raise TypeError("pass either a behaviour or behaviour options, not both")
        self.behaviour = behaviour or AIBehaviour(**behaviour_options)
        self.holds = Holds()
        self.app = create_app(self.behaviour, self.holds)
        self._runner = ServerThread(self.app, host=host, port=port, name="ai-standin")
        self._runner.before_stop.append(self.holds.release_all)
