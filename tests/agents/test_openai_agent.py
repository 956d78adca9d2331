"""The OpenAI-compatible agent against a local HTTP server started by the test."""

from __future__ import annotations

import base64
import io
import json
import socket
import time

import gymnasium as gym
import pytest
from PIL import Image

pytest.importorskip("openai", reason="needs openai: pip install 'pyvision-env[openai]'")

import pyvision_env  # noqa: F401,E402
from pyvision_agents.bench import bench  # noqa: E402
from pyvision_agents.registry import make_agent  # noqa: E402
from pyvision_agents.runner import AGENT_ERROR, run_episodes  # noqa: E402
from fake_openai import FakeOpenAI, completion  # noqa: E402

CODE = "I will look.\n<code>\n```python\nprint('ANSWER: 3')\n```\n"  # stop string eaten by the server


def tag_script(body, n):
    first_turn = body["messages"][-1]["role"] == "user"
    return 200, completion(CODE if first_turn else "<answer>\n\\boxed{3}\n</answer>"), 0.0


@pytest.fixture
def server(request):
    fake = FakeOpenAI(getattr(request, "param", tag_script))
    yield fake
    fake.close()


def agent_for(server, **options):
    return make_agent("openai:m", {"base_url": server.url, **options})


def make_env():
    return gym.make("PyVisionImage-v0", difficulty="easy", max_turns=4)


def test_episodes_run_with_images_as_data_urls(server):
    records = list(run_episodes(make_env, agent_for(server), [(0, 0), (1, 1)], num_envs=2))
    assert [r.end_reason for r in records] == ["DONE", "DONE"]
    assert all(r.code_cells == 1 and r.predicted == "3" for r in records)
    first = server.requests[0]
    assert first["model"] == "m" and first["stop"] == ["</code>"] and first["temperature"] == 0.0
    images = [p for p in first["messages"][0]["content"] if p["type"] == "image_url"]
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == records[0].images[0].shape[1::-1]
    later = server.requests[-1]["messages"]
    assert [m["role"] for m in later] == ["user", "assistant", "observation"]
    assert later[1]["content"][0]["text"].endswith("</code>")  # the stop string was put back
    assert "ANSWER: 3" in later[2]["content"][0]["text"]


@pytest.mark.parametrize("server", [lambda body, n: (503, {"error": "busy"}, 0) if n <= 2
                                    else tag_script(body, n)], indirect=True)
def test_server_errors_are_retried_with_backoff(server):
    records = list(run_episodes(make_env, agent_for(server, max_retries=3), [(0, 0)]))
    assert records[0].end_reason == "DONE" and len(server.requests) == 4  # 2 failures, 2 turns
    assert server.times[2] - server.times[1] > server.times[1] - server.times[0] > 0.2  # backing off


@pytest.mark.parametrize("server", [lambda body, n: (429, {"error": "slow down"}, 0, {"Retry-After": "2"})
                                    if n == 1 else tag_script(body, n)], indirect=True)
def test_a_429_is_retried_after_the_servers_retry_after(server):
    records = list(run_episodes(make_env, agent_for(server, max_retries=1), [(0, 0)]))
    assert records[0].end_reason == "DONE" and len(server.requests) == 3  # 1 refusal, 2 turns
    assert 1.9 < server.times[1] - server.times[0] < 4  # waited what the server asked, not its own 0.5 s


@pytest.mark.parametrize("server", [lambda body, n: (*tag_script(body, n)[:2], 0.05)], indirect=True)
def test_more_episodes_in_flight_than_the_image_cache_holds(server, monkeypatch):
    from pyvision_agents.openai_agent import OpenAIAgent

    monkeypatch.setattr(OpenAIAgent, "IMAGE_CACHE_SIZE", 2)
    agent = agent_for(server, max_concurrency=12)
    records = list(run_episodes(make_env, agent, [(i, i) for i in range(12)], num_envs=12))
    assert [r.end_reason for r in records] == ["DONE"] * 12 and all(r.error is None for r in records)
    assert len(server.requests) == 24  # two turns each, nothing sent twice


def test_the_image_cache_survives_threads_evicting_each_others_entries():
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from pyvision_agents.chat import data_url
    from pyvision_agents.openai_agent import ImageURLCache

    cache = ImageURLCache(capacity=2)
    images = [np.full((4, 4, 3), i, dtype=np.uint8) for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        urls = list(pool.map(cache.get, images * 200))
    assert urls == [data_url(image) for image in images] * 200
    assert len(cache._urls) == 2


@pytest.mark.parametrize("server", [lambda body, n: (*tag_script(body, n)[:2], 2.0 if n == 1 else 0)],
                         indirect=True)
def test_a_request_that_times_out_is_retried(server):
    started = time.monotonic()
    records = list(run_episodes(make_env, agent_for(server, timeout=0.5, max_retries=1), [(0, 0)]))
    assert records[0].end_reason == "DONE" and len(server.requests) == 3
    assert time.monotonic() - started < 2.0  # the slow attempt was abandoned, not waited for


@pytest.mark.parametrize("server", [lambda body, n: (400, {"error": {"message": "prompt too long"}}, 0)],
                         indirect=True)
def test_a_client_error_is_not_retried_and_ends_the_episode(server):
    records = list(run_episodes(make_env, agent_for(server, max_retries=3), [(0, 0)]))
    assert records[0].end_reason == AGENT_ERROR and len(server.requests) == 1
    assert "BadRequestError" in records[0].error and "prompt too long" in records[0].error


def test_a_dead_endpoint_ends_its_episodes_and_the_run_goes_on(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/v1"
    summaries = bench(["PyVisionImage-v0"], ["openai:m", "no-tool"], 3, tmp_path, progress=False,
                      plots=False, viewer=False, agent_options={"base_url": dead, "max_retries": 0})
    by_agent = {s.agent: s for s in summaries}
    assert by_agent["openai:m"].errors == 3 and by_agent["openai:m"].end_reasons == {AGENT_ERROR: 3}
    assert by_agent["no-tool"].episodes == 3 and by_agent["no-tool"].errors == 0
    records = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["agent"] == "openai:m"]
    assert all(dead in r["error"] and "APIConnectionError" in r["error"] for r in failed)
    assert all(r["task_id"] and r["transcript"][0]["role"] == "user" for r in failed)


def test_the_cli_fails_when_every_episode_of_an_agent_failed(tmp_path, capsys):
    from pyvision_agents.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    code = main(["bench", "--agent", "openai:m", "no-tool", "--episodes", "2", "--out", str(tmp_path),
                 "--base-url", dead, "--agent-opt", "max_retries=0", "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 1
    assert "every episode of openai:m on PyVisionImage-v0 failed (2 errors)" in err
    assert f"most common: OpenAI-compatible endpoint {dead} failed" in err and "APIConnectionError" in err
    assert "no-tool" not in err  # the other agent's group is fine


@pytest.mark.parametrize("server", [lambda body, n: (400, {"error": {"message": "overloaded"}}, 0)
                                    if n <= 2 else tag_script(body, n)], indirect=True)
def test_episodes_an_endpoint_failed_are_played_again_on_resume(server, tmp_path):
    options = {"base_url": server.url, "max_retries": 0}
    first = bench(["PyVisionImage-v0"], ["openai:m"], 3, tmp_path, progress=False, plots=False,
                  viewer=False, agent_options=options, env_kwargs={"difficulty": "easy", "max_turns": 4})
    assert first[0].errors == 2 and first[0].scored == 1
    again = bench(["PyVisionImage-v0"], ["openai:m"], 3, tmp_path, progress=False, plots=False,
                  viewer=False, agent_options=options, env_kwargs={"difficulty": "easy", "max_turns": 4})
    assert again[0].errors == 0 and again[0].scored == 3
    records = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 5  # the two failed records kept, superseded by two new ones
    kept = [r for r in records[:3] if r["end_reason"] == "DONE"]
    assert len(kept) == 1 and kept[0]["episode"] not in {r["episode"] for r in records[3:]}


def tool_script(body, n):
    assert body["tools"][0]["function"]["name"] == "python" and "stop" not in body
    if body["messages"][-1]["role"] == "user":
        call = {"id": "call_a", "type": "function",
                "function": {"name": "python", "arguments": json.dumps({"code": "print('ANSWER: 3')"})}}
        return 200, completion(None, [call]), 0
    return 200, completion("It prints 3, so \\boxed{3}."), 0


@pytest.mark.parametrize("server", [tool_script], indirect=True)
def test_tools_protocol_turns_tool_calls_into_code_cells(server):
    agent = agent_for(server, protocol="tools", observation_role="user")
    records = list(run_episodes(make_env, agent, [(0, 0)]))
    assert records[0].end_reason == "DONE" and records[0].code_cells == 1
    assert records[0].predicted == "3"
    second = server.requests[1]["messages"]
    assert second[1]["role"] == "assistant" and second[1]["tool_calls"][0]["function"]["name"] == "python"
    assert second[2]["role"] == "tool" and second[2]["tool_call_id"] == second[1]["tool_calls"][0]["id"]
    assert "ANSWER: 3" in second[2]["content"]
