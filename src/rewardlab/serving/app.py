"""``rewardlab serve``: an ASGI reward server (FastAPI on uvicorn) around any :class:`~rewardlab.scoring.Scorer`.

Endpoints:

* ``POST /get_reward``: OpenRLHF's remote-RM contract. Request ``{"query": [texts]}`` or
  ``{"query": [...], "prompts": [...], "labels": [...]}``; answer ``{"rewards", "scores", "extra_logs"}``.
  ``query`` is prompt + response already rendered by the policy's chat template: a scorer that reads
  rendered text (a local RM) scores it as given; any other scorer gets ``(prompt, query[len(prompt):])``,
  which needs ``prompts`` whose texts start each query.
* ``POST /v1/score``: ``{"prompts": [text or chat messages], "responses": [texts]}`` ->
  ``{"rewards", "heads" (per-head values of a multi-head model, else null), "model", "normalization"}``.
* ``GET /health`` (200 once the model is loaded and warmed, 503 before), ``GET /v1/metadata``.
* ``GET /metrics``: Prometheus text format (``serving.metrics``), on unless ``metrics=False``.

Requests that arrive within ``batch_window_ms`` are scored as one length-sorted batch by one worker thread
(:class:`~rewardlab.serving.batcher.DynamicBatcher`). Limits: body size (413), body read time (408),
items per request (422), queue size (503 + Retry-After), optional bearer token (401). A reply too long for the
model follows ``ServeConfig.too_long`` (default: its head that fits is scored and the item marked).

(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at runtime.)
"""


import asyncio
import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

from ..config import validate_fields
from ..errors import ConfigError, SequenceTooLongError
from ..scoring.protocol import HeadScorer, LengthChecked, Scorer, TextScorer

__all__ = ["ServeConfig", "create_app", "require_server_extras", "serve"]

logger = logging.getLogger("rewardlab.serve")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig:
    """How the reward server listens, batches and limits requests."""

    host: str = "127.0.0.1"
    """Interface to bind; anything but loopback exposes the model to the network (a warning says so)."""
    port: int = 8000
    """TCP port (0: any free port)."""
    api_key_env: str | None = None
    """Name of an environment variable holding a bearer token that every request must send (401 otherwise); never logged."""
    max_body_bytes: int = 8 * 2**20
    """Largest request body accepted (413 beyond)."""
    body_timeout_s: float = 30.0
    """Longest time to receive a request body (408 beyond): a slow client cannot hold a connection open forever."""
    max_items: int = 4096
    """Most items (texts or prompt/response pairs) per request (422 beyond)."""
    max_queue_items: int = 65536
    """Most items waiting to be scored across requests; beyond it requests get 503 with Retry-After."""
    batch_window_ms: float = 5.0
    """How long the batcher waits after a request for others to score with it."""
    max_batch_items: int = 256
    """Most items scored in one model call (the scorer still splits them into its own batches)."""
    retry_after_s: int = 1
    """The Retry-After a 503 carries."""
    graceful_shutdown_s: float = 30.0
    """On SIGTERM, how long in-flight requests get to finish."""
    metrics: bool = True
    """Serve GET /metrics (Prometheus text format: traffic, latency, batch sizes, queue, reward and length drift)."""
    metrics_window: int = 256
    """Scored items per window of the reward and reply-length statistics in /metrics (drift is against the first)."""
    too_long: Literal["truncate", "error", "null", "penalty"] = "truncate"
    """An item whose reply does not fit the model's max_length even without its prompt: 'truncate' scores the reply's
    head that fits (as OpenRLHF's own server does; the default, since one long rollout must not stop an RL run),
    'error' refuses the request (422 naming the indices), 'null' answers null for it and 'penalty' answers
    'too_long_penalty'; the others are scored either way, and every answer marks the items (/v1/score 'too_long'
    indices, /get_reward extra_logs 'too_long' 0/1 per item; counted in /metrics)."""
    too_long_penalty: float = -10.0
    """The reward of an over-long item under too_long 'penalty'."""

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.too_long_penalty != -10.0 and self.too_long != "penalty":
            raise ConfigError(f"option 'too_long_penalty' applies to too_long 'penalty', not {self.too_long!r}")
        for name in ("max_body_bytes", "max_items", "max_queue_items", "max_batch_items", "metrics_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"option '{name}' must be >= 1, got {getattr(self, name)}")
        if self.body_timeout_s <= 0 or self.batch_window_ms < 0:
            raise ConfigError("option 'body_timeout_s' must be > 0 and 'batch_window_ms' >= 0")


class _BodyLimit:
    """ASGI middleware: read the body with a size cap (413) and a time limit (408) before the app sees it."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        from starlette.responses import JSONResponse

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, 413)(scope, receive, send)
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                return await JSONResponse({"detail": f"request body not received within {self.timeout_s} s"}, 408,
                                          headers={"Connection": "close"})(scope, receive, send)
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, 413,
                                          headers={"Connection": "close"})(scope, receive, send)
            if not message.get("more_body", False):
                break
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_long_detail(items: list[int], max_length: int | None) -> dict[str, Any]:
    shown = ", ".join(map(str, items[:20])) + (" ..." if len(items) > 20 else "")
    return {"message": f"{len(items)} item(s) do not fit in max_length={max_length} tokens even without their prompt "
                       f"(indices {shown}); nothing was truncated", "too_long": items, "max_length": max_length}


def require_server_extras(config: ServeConfig, run: bool = True) -> None:
    """End with one line naming ``pip install "rewardlab[serve]"`` when the server's packages are missing (FastAPI,
    uvicorn to ``run`` it, prometheus-client for /metrics); the CLI calls this before it loads a model."""
    from ..extras import require

    require("fastapi", "serve", "rewardlab serve")
    if run:
        require("uvicorn", "serve", "rewardlab serve")
    if config.metrics:
        require("prometheus_client", "serve", "the reward server's /metrics (or --no-metrics)")


def create_app(scorer: Scorer, config: ServeConfig = ServeConfig()) -> Any:
    """The FastAPI app serving ``scorer`` (run it with uvicorn, or :func:`serve`).

    The scorer is called from one worker thread only; ``/health`` turns ready after a warm-up call.
    """
    from contextlib import asynccontextmanager

    require_server_extras(config, run=False)
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse

    from .. import __version__
    from .batcher import DynamicBatcher, QueueFull
    from .schema import RewardRequest, ScoreRequest

    from .served import ServedScorer

    described = scorer.describe()
    heads = list(scorer.heads) if isinstance(scorer, HeadScorer) else []
    multi = len(heads) > 1
    combined = multi and isinstance(scorer, HeadScorer) and scorer.combined({h: 0.0 for h in heads}) is not None
    settings = described.get("settings", {})
    max_length = scorer.max_length if isinstance(scorer, LengthChecked) else None

    metrics = None
    if config.metrics:
        from .metrics import ServerMetrics

        metrics = ServerMetrics(config.metrics_window)
    served = ServedScorer(scorer, config.too_long, config.too_long_penalty,
                          count_too_long=None if metrics is None else metrics.too_long.labels(config.too_long).inc,
                          observe=None if metrics is None else metrics.observe_scored)
    batcher = DynamicBatcher(served.score_batch, config.batch_window_ms / 1000, config.max_batch_items, config.max_queue_items)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher.start()
        await batcher.run_in_worker(lambda: served.score_items("pairs", [("Hello", "Hi! How can I help?")]))  # warm-up
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()  # uvicorn stops accepting first; what is queued still gets its answer

    app = FastAPI(title="rewardlab reward server", version=__version__, lifespan=lifespan)
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if config.api_key_env and not key:
        raise ConfigError(f"environment variable {config.api_key_env} (the server's API key) is not set")

    def authorize(request: Request) -> None:
        if key is None:
            return
        sent = request.headers.get("authorization", "")
        if not (sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), key.encode())):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def check_count(n: int, field: str) -> None:
        if n > config.max_items:
            raise HTTPException(422, f"'{field}' has {n} items; this server takes at most {config.max_items} per request")

    async def run(kind: str, items: list[Any]) -> list[Any]:
        try:
            return await batcher.submit(kind, items)
        except QueueFull as err:
            raise HTTPException(503, f"server busy: {err}", headers={"Retry-After": str(config.retry_after_s)}) from None
        except SequenceTooLongError as err:  # found by the length check, or by a scorer without one
            raise HTTPException(422, _too_long_detail(list(err.items), err.max_length)) from None

    def count(endpoint: str, n: int) -> None:
        if metrics is not None:
            metrics.items.labels(endpoint).inc(n)

    if metrics is not None:
        from fastapi.responses import Response

        @app.get("/metrics", dependencies=[Depends(authorize)])
        async def prometheus() -> Any:
            body, content_type = metrics.render(batcher.waiting_items)
            return Response(body, media_type=content_type)

    @app.get("/health")
    async def health() -> Any:
        return JSONResponse({"status": "ok" if state["ready"] else "loading"}, 200 if state["ready"] else 503)

    @app.get("/v1/metadata", dependencies=[Depends(authorize)])
    async def metadata() -> Any:
        return {"model": described.get("model"), "kind": described.get("kind"), "heads": heads or None,
                "combined": combined if multi else None, "max_length": max_length,
                "pooling": settings.get("pooling"), "precision": settings.get("dtype"), "normalization": settings.get("normalize"),
                "version": __version__, "scorer": described,
                "limits": {"max_items": config.max_items, "max_body_bytes": config.max_body_bytes}}

    @app.post("/v1/score", dependencies=[Depends(authorize)])
    async def score(request: ScoreRequest) -> Any:
        if len(request.prompts) != len(request.responses):
            raise HTTPException(422, f"got {len(request.prompts)} prompts but {len(request.responses)} responses")
        check_count(len(request.prompts), "prompts")
        prompts = [p if isinstance(p, str) else [m.model_dump() for m in p] for p in request.prompts]
        results = await run("pairs", list(zip(prompts, request.responses)))
        count("/v1/score", len(results))
        return {"rewards": [r for r, _, _ in results],
                "heads": {h: [row[h] for _, row, _ in results] for h in heads} if multi else None,
                "too_long": [i for i, (_, _, long) in enumerate(results) if long],
                "too_long_policy": config.too_long,
                "model": described.get("model"), "normalization": settings.get("normalize")}

    @app.post("/get_reward", dependencies=[Depends(authorize)])
    async def get_reward(request: RewardRequest) -> Any:
        check_count(len(request.query), "query")
        if multi and not combined:
            raise HTTPException(422, f"the model has heads {heads}: start the server with --weights or --primary to get one reward")
        if isinstance(scorer, TextScorer):
            results = await run("texts", list(request.query))
        else:
            if request.prompts is None or len(request.prompts) != len(request.query):
                raise HTTPException(422, "this scorer needs 'prompts' (one per query) to split each query into prompt and response")
            unmatched = [i for i, (q, p) in enumerate(zip(request.query, request.prompts)) if not q.startswith(p)]
            if unmatched:
                raise HTTPException(422, f"queries {unmatched[:20]} do not start with their prompt")
            results = await run("pairs", [(p, q[len(p):]) for q, p in zip(request.query, request.prompts)])
        count("/get_reward", len(results))
        rewards = [r for r, _, _ in results]
        extra = {h: [row[h] for _, row, _ in results] for h in heads} if multi else {}
        extra["too_long"] = [float(long) for _, _, long in results]  # OpenRLHF logs extra_logs per sample
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra}

    app.add_middleware(_BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    if metrics is not None:
        from .metrics import MetricsMiddleware

        app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees the body limit's 413/408 too
    app.state.metrics = metrics
    app.state.batcher = batcher
    return app


def serve(scorer: Scorer, config: ServeConfig = ServeConfig()) -> None:
    """Serve ``scorer`` with uvicorn until SIGINT/SIGTERM (in-flight requests finish first)."""
    require_server_extras(config)
    import uvicorn

    if config.host not in LOOPBACK:
        logger.warning("binding %s: the reward server is reachable from the network%s", config.host,
                       "" if config.api_key_env else " without an API key (--api-key-env)")
    uvicorn.run(create_app(scorer, config), host=config.host, port=config.port, log_level="info",
                timeout_graceful_shutdown=config.graceful_shutdown_s, timeout_keep_alive=5)
