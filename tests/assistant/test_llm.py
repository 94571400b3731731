"""The optional LLM phrasing against a local OpenAI-compatible endpoint: a grounded
rewording is used (source "llm"), one that invents a number is not, and an endpoint
that fails leaves the template answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from roomserver.assistant.llm import grounded
from tests.assistant.test_assistant_server import JACKET, PIN
from tests.server_fixtures import Recorder, Server


def test_grounding_rejects_invented_numbers() -> None:
    facts = "轻暖羽绒服现在¥459"
    assert grounded("这件羽绒服现在只要459元", facts)
    assert not grounded("现在只要399元", facts)
    assert not grounded("NO_ANSWER", facts)
    assert not grounded("", facts)


@pytest.fixture
async def llm() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[str]]]:
    """A chat-completions endpoint answering from ``replies`` (one per call; "500": fail)."""
    seen: list[dict[str, Any]] = []
    replies: list[str] = []

    async def complete(request: web.Request) -> web.Response:
        seen.append(await request.json())
        reply = replies.pop(0) if replies else "NO_ANSWER"
        if reply == "500":
            return web.Response(status=500)
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": reply}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1", seen, replies
    await runner.cleanup()


async def test_answers_are_reworded_only_from_their_facts(
    make_server: Callable[..., Awaitable[Server]], room: str, llm: tuple[str, list[dict[str, Any]], list[str]]
) -> None:
    url, seen, replies = llm
    server = await make_server(assistant_llm_url=url, assistant_llm_model="test-model")
    assert (await server.admin("PUT", "/v1/products/jacket", JACKET))[0] == 200
    host = await server.client("h1", "host")
    await host.join(room)
    await host.pin_product(room, PIN)
    replies.extend(["亲，这件现在459元哦", "现在只要9块9", "500"])
    answers = []
    for i, question in enumerate(["多少钱", "价格多少", "什么价格"]):
        viewer = await server.client(f"v{i}")
        await viewer.join(room)
        rec = Recorder(viewer)
        await viewer.send_barrage(room, question)
        (ev,) = await rec.wait("assistant.answer")
        answers.append(ev["data"])
    assert answers[0]["source"] == "llm" and answers[0]["text"] == "亲，这件现在459元哦"
    assert answers[1]["source"] == "live" and "¥459" in answers[1]["text"]  # 9.9 was invented
    assert answers[2]["source"] == "live"  # the endpoint failed
    assert seen[0]["model"] == "test-model" and "¥459" in seen[0]["messages"][1]["content"]
