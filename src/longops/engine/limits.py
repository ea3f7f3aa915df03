"""Concurrency and rate limits on kinds, kept deployment-wide by the store's claims.

A kind declares its limits (`@kind(..., concurrency=2)`) and the operator overrides them
(`longops serve|worker --concurrency KIND=N`, `LONGOPS_CONCURRENCY`, and so on): each is
a number per kind, or per concurrency key of the kind, where a key is the tenant's
`concurrencyKey` on the create (one per customer, per model, …). Keys are the tenant's
own: two tenants sending the same key never share its limit.

- `concurrency`: at most this many of the kind RUNNING at once, across every worker
  process of the database;
- `key_concurrency`: at most this many of one key of the kind at once;
- `rate` and `key_rate`: at most this many starts per second (a token bucket kept in
  the store, filled to one second's worth, so every worker draws from one bucket).

Work over a limit is not refused: it stays PENDING and is claimed once the limit allows
(see `SqlStore.claim`). Every process should be given the same limits; each claim
applies the limits of the process claiming.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["ENVIRONMENT", "Limit", "Limits", "Room", "parse_limits"]


@dataclass(frozen=True, slots=True)
class Limit:
    """One kind's limits; 0 is unlimited."""

    concurrency: int = 0
    key_concurrency: int = 0
    rate: float = 0.0
    """Starts per second."""
    key_rate: float = 0.0
    """Starts per second of one concurrency key."""

    def __post_init__(self) -> None:
        """Refused where declared: a negative or NaN limit would keep the kind from ever
        starting (no count is below it), an infinite one is no limit but reads as one."""
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0 <= value < math.inf:
                raise ValueError(
                    f"{f.name} must be finite and 0 (unlimited) or more, not {value!r}"
                )

    def __bool__(self) -> bool:
        return bool(self.concurrency or self.key_concurrency or self.rate or self.key_rate)

    @property
    def counts_running(self) -> bool:
        return bool(self.concurrency or self.key_concurrency)

    @property
    def rated(self) -> bool:
        return bool(self.rate or self.key_rate)


ENVIRONMENT = {
    "concurrency": "LONGOPS_CONCURRENCY",
    "key_concurrency": "LONGOPS_KEY_CONCURRENCY",
    "rate": "LONGOPS_RATE",
    "key_rate": "LONGOPS_KEY_RATE",
}
"""The setting that overrides each field of `Limit` (the flags are named alike:
`--concurrency`, `--key-concurrency`, `--rate`, `--key-rate`)."""

# ASCII digits: `\d` would read any script's digits as numbers ("a=\u0663" as a=3).
_ENTRY = re.compile(r"^([a-zA-Z][a-zA-Z0-9_.-]{0,127})=([0-9]{1,9}(?:\.[0-9]{1,6})?)(/s|/m|/h)?$")
_PER = {None: 1.0, "/s": 1.0, "/m": 60.0, "/h": 3600.0}


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of every kind that has one."""

    kinds: Mapping[str, Limit]

    def of(self, kind: str) -> Limit:
        return self.kinds.get(kind) or Limit()

    def among(self, kinds: Iterable[str]) -> dict[str, Limit]:
        """The limited kinds among `kinds`."""
        return {k: self.kinds[k] for k in kinds if self.kinds.get(k)}

    @classmethod
    def of_kinds(
        cls, declared: Mapping[str, Limit], overrides: Mapping[str, Mapping[str, float]]
    ) -> Limits:
        """The kinds' declared limits with the operator's `overrides` (field → kind →
        value) over them."""
        merged = dict(declared)
        for name, per_kind in overrides.items():
            for kind, value in per_kind.items():
                current = merged.get(kind, Limit())
                change: dict[str, Any] = {name: value if name.endswith("rate") else int(value)}
                merged[kind] = replace(current, **change)
        return cls({k: v for k, v in merged.items() if v})


def parse_limits(
    field: str, entries: Iterable[str], *, setting: str | None = None
) -> dict[str, float]:
    """`KIND=N` entries (comma-separated or repeated) of one limit, kind → value; rates may
    say `/s`, `/m` or `/h` (per second when bare). Raises ValueError naming `setting`."""
    if field not in {f.name for f in fields(Limit)}:
        raise ValueError(f"unknown limit {field!r}")
    name = setting or "--" + field.replace("_", "-")
    rated = field.endswith("rate")
    parsed: dict[str, float] = {}
    for entry in (e.strip() for chunk in entries for e in chunk.split(",")):
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None or (not rated and (match[3] or "." in match[2])):
            example = "generate_videos=5/s" if rated else "generate_videos=2"
            raise ValueError(f"{name}: {entry!r} is not KIND=NUMBER (e.g. {example})")
        parsed[match[1]] = float(match[2]) / _PER[match[3]] if rated else int(match[2])
    return parsed


Key = tuple[str, str, str]
"""A concurrency key: (kind, tenant, key)."""


class Room:
    """What one claim may still start under its limits, from what is running and what
    the rate buckets hold (as `SqlStore.claim` reads them, inside its transaction)."""

    def __init__(self, limits: Mapping[str, Limit], now: float) -> None:
        self._limits = limits
        self._now = now
        self._running: Counter[str] = Counter()
        self._running_keys: Counter[Key] = Counter()
        self._tokens: dict[tuple[str, bool, str, str], float] = {}
        self._taken: Counter[str] = Counter()
        self._taken_keys: Counter[Key] = Counter()

    @staticmethod
    def _burst(rate: float) -> float:
        """A bucket holds one second of starts (at least one start)."""
        return max(1.0, rate)

    def horizon(self) -> float:
        """Seconds after which any bucket of these limits is full again (and need not be
        kept)."""
        rates = [r for v in self._limits.values() for r in (v.rate, v.key_rate) if r]
        return max((self._burst(r) / r for r in rates), default=0.0)

    def running(self, kind: str, tenant: str, key: str, count: int) -> None:
        self._running[kind] += count
        self._running_keys[kind, tenant, key] += count

    def bucket(
        self, kind: str, per_key: bool, tenant: str, key: str, tokens: float, updated: float
    ) -> None:
        limit = self._limits[kind]
        rate = limit.key_rate if per_key else limit.rate
        if rate:
            refilled = tokens + max(0.0, self._now - updated) * rate
            self._tokens[kind, per_key, tenant, key] = min(self._burst(rate), refilled)

    def _left(self, kind: str, per_key: bool, tenant: str, key: str) -> float:
        limit = self._limits[kind]
        rate = limit.key_rate if per_key else limit.rate
        return self._tokens.get((kind, per_key, tenant, key), self._burst(rate))

    def _kind_full(self, kind: str, limit: Limit) -> str | None:
        """What keeps one more of the kind, any key, from starting, or None."""
        taken = self._taken[kind]
        if limit.concurrency and self._running[kind] + taken >= limit.concurrency:
            return "concurrency_limited"
        if limit.rate and self._left(kind, False, "", "") - taken < 1:
            return "rate_limited"
        return None

    def open(self, kind: str) -> bool:
        """Whether the kind has room for one more start (any key)."""
        limit = self._limits.get(kind)
        return not limit or self._kind_full(kind, limit) is None

    def full_keys(self) -> list[Key]:
        """The keys that have no room, whatever room their kind has."""
        full = {
            k
            for k, n in self._running_keys.items()
            if (c := self._limits[k[0]].key_concurrency) and n >= c
        }
        full.update(
            (k, t, c) for (k, per_key, t, c), left in self._tokens.items() if per_key and left < 1
        )
        return sorted(full)

    def why_not(self, kind: str, tenant: str, key: str) -> str | None:
        """What keeps one more of `key` from starting: `concurrency_limited`,
        `rate_limited`, or None when the limits allow it."""
        limit = self._limits.get(kind)
        if not limit:
            return None
        full = self._kind_full(kind, limit)
        k = (kind, tenant, key)
        taken = self._taken_keys[k]
        if full == "concurrency_limited" or (
            limit.key_concurrency and self._running_keys[k] + taken >= limit.key_concurrency
        ):
            return "concurrency_limited"
        if full or (limit.key_rate and self._left(kind, True, tenant, key) - taken < 1):
            return "rate_limited"
        return None

    def take(self, kind: str, tenant: str, key: str) -> bool:
        """Start one of `key` if the limits allow, counting it against them."""
        if self.why_not(kind, tenant, key) is not None:
            return False
        self._taken[kind] += 1
        self._taken_keys[kind, tenant, key] += 1
        return True

    def spent(self, started: Iterable[Key]) -> list[tuple[str, bool, str, str, float, float]]:
        """The buckets' rows once `started` have each taken a token: (kind, per_key,
        tenant, key, tokens, updated)."""
        kinds: Counter[str] = Counter()
        keys: Counter[Key] = Counter()
        for kind, tenant, key in started:
            kinds[kind] += 1
            keys[kind, tenant, key] += 1
        rows = []
        for kind, n in kinds.items():
            if self._limits[kind].rate:
                rows.append((kind, False, "", "", self._left(kind, False, "", "") - n, self._now))
        for (kind, tenant, key), n in keys.items():
            if self._limits[kind].key_rate:
                left = self._left(kind, True, tenant, key) - n
                rows.append((kind, True, tenant, key, left, self._now))
        return rows
