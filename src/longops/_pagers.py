"""Pagers over list calls that answer `{"<items>": [...], "nextPageToken": "..."}`.

The first page is fetched by the list call itself, so `page` is ready at once; later pages
are fetched only when iteration or `next_page()` reaches them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic, TypeAlias, TypeVar

__all__ = ["AsyncPager", "Page", "Pager"]

T = TypeVar("T")

# One page of items and the token of the page after it (None on the last page).
Page: TypeAlias = tuple[list[T], str | None]


class Pager(Generic[T]):
    """Iterates items from the current page onwards, fetching pages as it goes."""

    def __init__(self, fetch: Callable[[str], Page[T]], first: Page[T]) -> None:
        self._fetch = fetch
        self._page, self._next_page_token = first

    @property
    def page(self) -> list[T]:
        return self._page

    @property
    def next_page_token(self) -> str | None:
        return self._next_page_token

    def next_page(self) -> list[T]:
        """Fetch the next page and make it the current one."""
        if self._next_page_token is None:
            raise IndexError("No more pages to fetch.")
        self._page, self._next_page_token = self._fetch(self._next_page_token)
        return self._page

    def __iter__(self) -> Iterator[T]:
        while True:
            yield from self._page
            if self._next_page_token is None:
                return
            self.next_page()


class AsyncPager(Generic[T]):
    """Iterates items from the current page onwards, fetching pages as it goes."""

    def __init__(self, fetch: Callable[[str], Awaitable[Page[T]]], first: Page[T]) -> None:
        self._fetch = fetch
        self._page, self._next_page_token = first

    @property
    def page(self) -> list[T]:
        return self._page

    @property
    def next_page_token(self) -> str | None:
        return self._next_page_token

    async def next_page(self) -> list[T]:
        """Fetch the next page and make it the current one."""
        if self._next_page_token is None:
            raise IndexError("No more pages to fetch.")
        self._page, self._next_page_token = await self._fetch(self._next_page_token)
        return self._page

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            for item in self._page:
                yield item
            if self._next_page_token is None:
                return
            await self.next_page()
