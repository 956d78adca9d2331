"""A fake OpenAI-compatible `/v1/chat/completions` on 127.0.0.1, for the agent and judge tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content, tool_calls=None, model="m"):
    """A chat completion whose one choice says `content` (and makes `tool_calls`)."""
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if tool_calls else "stop"}]}


class FakeOpenAI:
    """Replies come from `script(request body, n)` for the n-th request (1-based): (status, reply
    dict, delay seconds[, headers dict]). Status 0 sends a 200 whose body stops halfway.

    Every request body is kept in `requests`, with the time it arrived in `times`.
    """

    def __init__(self, script):
        self.script, self.requests, self.times, self.lock = script, [], [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.times.append(time.monotonic())
                    n = len(server.requests)
                status, reply, delay, *headers = server.script(body, n)
                time.sleep(delay)
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status or 200)
                    for key, value in (headers[0] if headers else {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data if status else data[: len(data) // 2])
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
