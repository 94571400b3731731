"""Optional phrasing by an LLM (an edge; off unless ``--assistant-llm-url`` is given).

The model never decides *whether* or *what* to answer: retrieval did, and the model
only rewords the retrieved facts for the question (OpenAI-compatible
``POST {url}/chat/completions``). Its reply is used only when it is grounded: every
number in it appears in the facts (prices, stock, times are never invented), it is
short, and it is not the refusal marker. Otherwise, and on any error or timeout,
the template answer stands.
"""

from __future__ import annotations

import logging
import re

import aiohttp

from roomserver.assistant.text import Lang

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
MAX_CHARS = 200
REFUSAL = "NO_ANSWER"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")

SYSTEM = (
    "You are the shopping assistant of a live-stream room. Answer the shopper's question in one short "
    "sentence using ONLY the facts given. Never add numbers, prices or promises that are not in the facts. "
    f"If the facts do not answer the question, reply exactly {REFUSAL}."
)


def grounded(reply: str, facts: str) -> bool:
    """Every number of ``reply`` is a number of ``facts``; short; not a refusal."""
    reply = reply.strip()
    if not reply or REFUSAL in reply or len(reply) > MAX_CHARS:
        return False
    known = set(_NUMBER.findall(facts))
    return all(n in known for n in _NUMBER.findall(reply))


class Phraser:
    def __init__(self, url: str, model: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http: aiohttp.ClientSession | None = None
        self.used = 0
        self.rejected = 0

    async def phrase(self, question: str, facts: str, lang: Lang) -> str | None:
        """The model's wording of ``facts`` for ``question``, or None (use the template)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 120,
            "messages": [
                {
                    "role": "system",
                    "content": SYSTEM + (" Reply in Chinese." if lang == "zh" else " Reply in English."),
                },
                {"role": "user", "content": f"Facts: {facts}\nQuestion: {question}"},
            ],
        }
        try:
            async with self._http.post(self.url, json=body, headers=self._headers) as resp:
                if resp.status != 200:
                    raise ValueError(f"status {resp.status}")
                data = await resp.json()
            reply = str(data["choices"][0]["message"]["content"]).strip()
        except Exception as exc:  # any failure: the template answer stands
            log.info("assistant llm: %s", exc)
            self.rejected += 1
            return None
        if not grounded(reply, facts):
            self.rejected += 1
            return None
        self.used += 1
        return reply

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
