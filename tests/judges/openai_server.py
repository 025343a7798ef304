"""A local HTTP server speaking the OpenAI chat-completions protocol, for client tests (127.0.0.1 only).

``script`` is a list of (status, body) responses served in order (the last one repeats);
body ``None`` means a normal completion whose text comes from ``answer(messages)``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, answer, script=None, with_logprobs=None):
        self.answer, self.script, self.with_logprobs = answer, list(script or []), with_logprobs
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                owner.headers.append(dict(self.headers))
                status, payload = (owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]) if owner.script else (200, None)
                if payload is None:
                    text = owner.answer(body["messages"])
                    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    if body.get("logprobs") and owner.with_logprobs:
                        choice["logprobs"] = {"content": owner.with_logprobs(text)}
                    payload = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
