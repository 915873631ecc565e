"""The one way every list pages, as HTTP carries it: `limit` and an opaque `cursor` in the query; `items`,
`has_more` and `next_cursor` in the body; and the next page's address in a `Link: <…>; rel="next"` header
(RFC 8288), so that a client that follows links needs nothing else."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response
from pydantic import Field

from service.http.schemas.common import CURSOR_PATTERN, PageOut, WrittenInDigits
from service.pagination import Page

P = TypeVar("P", bound=PageOut)
T = TypeVar("T")

CURSOR = "cursor"
DEPRECATED_CURSORS = ("after", "before")
"""Older names of `cursor`, taken for one minor version (CHANGELOG); the next page's link never carries them."""


@dataclass(frozen=True)
class Paging:
    limit: int
    cursor: str | None
    request: Request
    response: Response

    def answer(self, model: type[P], page: Page[T], each: Callable[[T], object], **more: object) -> P:
        """The page as `model` (a `PageOut`), its `Link` header set."""
        self.link(page.next_cursor)
        return model(
            items=[each(item) for item in page.items], next_cursor=page.next_cursor, has_more=page.has_more, **more
        )

    def link(self, next_cursor: str | None) -> None:
        """Point the answer's `Link` header at the next page, when there is one: this request's path and query,
        its cursor replaced (a relative reference: right behind any proxy that keeps the path)."""
        if next_cursor is None:
            return
        query = [
            (name, value)
            for name, value in self.request.query_params.multi_items()
            if name != CURSOR and name not in DEPRECATED_CURSORS
        ]
        query.append((CURSOR, next_cursor))
        self.response.headers["Link"] = f'<{self.request.url.path}?{urlencode(query)}>; rel="next"'


def _paging(
    request: Request,
    response: Response,
    limit: Annotated[
        int, Field(ge=1, le=1000), WrittenInDigits, Query(description="At most this many items (default 100).")
    ] = 100,
    cursor: Annotated[
        str | None,
        Field(pattern=CURSOR_PATTERN, max_length=400),
        Query(description="The `next_cursor` of the previous page (opaque; keep the same filters)."),
    ] = None,
) -> Paging:
    return Paging(limit, cursor, request, response)


PagingDep = Annotated[Paging, Depends(_paging)]
