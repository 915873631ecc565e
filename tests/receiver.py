"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that keeps what it is sent and answers as
told (a list of statuses, then 200)."""

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    def verified(self, secret: str) -> dict[str, Any]:
        """The event, once its signature verifies with the Standard Webhooks library (which raises if not)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []
        self.url = ""
        self.host = ""
        """`127.0.0.1:PORT`: what `WEBHOOK_ALLOWED_HOSTS` names to allow it."""

    @classmethod
    @asynccontextmanager
    async def running(cls, path: str = "/hooks") -> AsyncIterator["Receiver"]:
        receiver = cls()
        server = await asyncio.start_server(receiver._serve, "127.0.0.1", 0)
        receiver.host = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        receiver.url = f"http://{receiver.host}{path}"
        async with server:
            yield receiver

    def at(self, url: str) -> list[Received]:
        """What was sent to one endpoint's URL."""
        return [r for r in self.received if url.endswith(r.path)]

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        return [r.event for r in self.received if type is None or r.event["type"] == type]

    def counts(self) -> Counter[str]:
        """How many times each `webhook-id` arrived."""
        return Counter(r.headers["webhook-id"] for r in self.received)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = (await reader.readline()).split()[1].decode()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append(Received(path, headers, body))
        status = self.answers.pop(0) if self.answers else 200
        answer = b"thanks" if status == 200 else b"receiver trouble " * 100
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(answer), answer)
        )
        await writer.drain()
        writer.close()
