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
from ..scoring.protocol import HeadScorer, Scorer, TextScorer

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
    batch_tokens: int | Literal["auto", "none"] = "auto"
    """Also close a batch when its items' estimated tokens (characters / 4) reach this, so that a request waits for
    about one of the scorer's forward passes, not for several: 'auto' is the served scorer's own token cap per
    forward pass (reward models: 2048 on CPU, none on GPU; other scorers: none); 'none': items alone close a batch.
    The estimate only groups requests: every item is scored whole either way."""
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
        if isinstance(self.batch_tokens, int) and self.batch_tokens < 1:
            raise ConfigError(f"option 'batch_tokens' must be >= 1, 'auto' or 'none', got {self.batch_tokens}")
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


class _Service:
    """What the routes do, apart from HTTP plumbing: validate a request, queue its items, shape the answer."""

    def __init__(self, scorer: Scorer, config: ServeConfig):
        from .batcher import DynamicBatcher
        from .served import ServedScorer

        self.scorer, self.config = scorer, config
        self.metrics = None
        if config.metrics:
            from .metrics import ServerMetrics

            self.metrics = ServerMetrics(config.metrics_window)
        metrics = self.metrics
        self.served = ServedScorer(scorer, config.too_long, config.too_long_penalty,
                                   count_too_long=None if metrics is None else metrics.too_long.labels(config.too_long).inc,
                                   observe=None if metrics is None else metrics.observe_scored)
        budget = config.batch_tokens if isinstance(config.batch_tokens, int) else (
            self.served.tokens_per_forward if config.batch_tokens == "auto" else None)
        self.batcher = DynamicBatcher(self.served.score_batch, config.batch_window_ms / 1000, config.max_batch_items,
                                      config.max_queue_items, meter=self.served.token_meter, max_batch_cost=budget)
        self.described = scorer.describe()
        self.settings = self.described.get("settings", {})
        heads, multi = self.served.heads, self.served.multi
        self.combined = multi and isinstance(scorer, HeadScorer) and scorer.combined({h: 0.0 for h in heads}) is not None
        self.ready = False

    def check_count(self, n: int, field: str) -> None:
        from fastapi import HTTPException

        if n > self.config.max_items:
            raise HTTPException(422, f"'{field}' has {n} items; this server takes at most {self.config.max_items} per request")

    async def run(self, kind: str, items: list[Any], endpoint: str) -> list[Any]:
        from fastapi import HTTPException

        from .batcher import QueueFull

        try:
            results = await self.batcher.submit(kind, items)
        except QueueFull as err:
            raise HTTPException(503, f"server busy: {err}", headers={"Retry-After": str(self.config.retry_after_s)}) from None
        except SequenceTooLongError as err:  # found by the length check, or by a scorer without one
            raise HTTPException(422, _too_long_detail(list(err.items), err.max_length)) from None
        if self.metrics is not None:
            self.metrics.items.labels(endpoint).inc(len(results))
        return results

    def metadata(self) -> dict[str, Any]:
        from .. import __version__

        heads, settings = self.served.heads, self.settings
        return {"model": self.described.get("model"), "kind": self.described.get("kind"), "heads": heads or None,
                "combined": self.combined if self.served.multi else None, "max_length": self.served.max_length,
                "pooling": settings.get("pooling"), "precision": settings.get("dtype"), "normalization": settings.get("normalize"),
                "version": __version__, "scorer": self.described,
                "limits": {"max_items": self.config.max_items, "max_body_bytes": self.config.max_body_bytes}}

    async def score(self, prompts: list[Any], responses: list[str]) -> dict[str, Any]:
        """``/v1/score``: rewards, per-head values of a multi-head model, the too-long indices."""
        from fastapi import HTTPException

        if len(prompts) != len(responses):
            raise HTTPException(422, f"got {len(prompts)} prompts but {len(responses)} responses")
        self.check_count(len(prompts), "prompts")
        results = await self.run("pairs", list(zip(prompts, responses)), "/v1/score")
        heads = self.served.heads
        return {"rewards": [r for r, _, _ in results],
                "heads": {h: [row[h] for _, row, _ in results] for h in heads} if self.served.multi else None,
                "too_long": [i for i, (_, _, long) in enumerate(results) if long],
                "too_long_policy": self.config.too_long,
                "model": self.described.get("model"), "normalization": self.settings.get("normalize")}

    async def get_reward(self, query: list[str], prompts: list[str] | None) -> dict[str, Any]:
        """``/get_reward`` (OpenRLHF): rendered queries scored as given by a text scorer, else split at their prompt."""
        from fastapi import HTTPException

        self.check_count(len(query), "query")
        heads, multi = self.served.heads, self.served.multi
        if multi and not self.combined:
            raise HTTPException(422, f"the model has heads {heads}: start the server with --weights or --primary to get one reward")
        if isinstance(self.scorer, TextScorer):
            results = await self.run("texts", list(query), "/get_reward")
        else:
            if prompts is None or len(prompts) != len(query):
                raise HTTPException(422, "this scorer needs 'prompts' (one per query) to split each query into prompt and response")
            unmatched = [i for i, (q, p) in enumerate(zip(query, prompts)) if not q.startswith(p)]
            if unmatched:
                raise HTTPException(422, f"queries {unmatched[:20]} do not start with their prompt")
            results = await self.run("pairs", [(p, q[len(p):]) for q, p in zip(query, prompts)], "/get_reward")
        rewards = [r for r, _, _ in results]
        extra = {h: [row[h] for _, row, _ in results] for h in heads} if multi else {}
        extra["too_long"] = [float(long) for _, _, long in results]  # OpenRLHF logs extra_logs per sample
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra}


def create_app(scorer: Scorer, config: ServeConfig = ServeConfig()) -> Any:
    """The FastAPI app serving ``scorer`` (run it with uvicorn, or :func:`serve`).

    The scorer is called from one worker thread only; ``/health`` turns ready after a warm-up call.
    """
    from contextlib import asynccontextmanager

    require_server_extras(config, run=False)
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, Response

    from .. import __version__
    from .schema import RewardRequest, ScoreRequest

    service = _Service(scorer, config)
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if config.api_key_env and not key:
        raise ConfigError(f"environment variable {config.api_key_env} (the server's API key) is not set")

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        service.batcher.start()
        await service.batcher.run_in_worker(lambda: service.served.score_items("pairs", [("Hello", "Hi! How can I help?")]))
        if service.metrics is not None:  # the imports a batch's statistics need load now, not in a batch
            await service.batcher.run_in_worker(service.metrics.warm_up)
        service.ready = True  # warmed up
        yield
        service.ready = False
        await service.batcher.stop()  # uvicorn stops accepting first; what is queued still gets its answer

    app = FastAPI(title="rewardlab reward server", version=__version__, lifespan=lifespan)

    def authorize(request: Request) -> None:
        if key is None:
            return
        sent = request.headers.get("authorization", "")
        if not (sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), key.encode())):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorize)]
    if (metrics := service.metrics) is not None:
        @app.get("/metrics", dependencies=guarded)
        async def prometheus() -> Any:
            body, content_type = metrics.render(service.batcher.waiting_items)
            return Response(body, media_type=content_type)

    @app.get("/health")
    async def health() -> Any:
        return JSONResponse({"status": "ok" if service.ready else "loading"}, 200 if service.ready else 503)

    @app.get("/v1/metadata", dependencies=guarded)
    async def metadata() -> Any:
        return service.metadata()

    @app.post("/v1/score", dependencies=guarded)
    async def score(request: ScoreRequest) -> Any:
        prompts = [p if isinstance(p, str) else [m.model_dump() for m in p] for p in request.prompts]
        return await service.score(prompts, request.responses)

    @app.post("/get_reward", dependencies=guarded)
    async def get_reward(request: RewardRequest) -> Any:
        return await service.get_reward(request.query, request.prompts)

    app.add_middleware(_BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    if service.metrics is not None:
        from .metrics import MetricsMiddleware

        app.add_middleware(MetricsMiddleware, metrics=service.metrics)  # outermost: sees the body limit's 413/408 too
    app.state.metrics = service.metrics
    app.state.batcher = service.batcher
    return app


def serve(scorer: Scorer, config: ServeConfig = ServeConfig()) -> None:
    """Serve ``scorer`` with uvicorn until SIGINT/SIGTERM (in-flight requests finish first)."""
    require_server_extras(config)
    import uvicorn

    if config.host not in LOOPBACK:
        logger.warning("binding %s: the reward server is reachable from the network%s", config.host,
                       "" if config.api_key_env else " without an API key (--api-key-env)")
    uvicorn.run(create_app(scorer, config), host=config.host, port=config.port, log_level="info",
                timeout_graceful_shutdown=config.graceful_shutdown_s,  # type: ignore[arg-type]  # uvicorn says int; a float
                timeout_keep_alive=5)  # goes to asyncio.wait_for, which takes one
