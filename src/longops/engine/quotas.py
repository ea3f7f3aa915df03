"""Tenant quotas: at most N unfinished operations and M creates per minute per tenant.

Both are counted in the database (`Store.tenant_usage`), so every API server sharing it
enforces one limit. The count and the insert are separate statements: creates racing
each other from several requests may each see room for one more, so a tenant can go
over a limit by at most the creates it has in flight at once, never without bound.
Creates count per minute as the tenant's newest operations still stored: deleting
operations frees room early.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from longops.engine.store import Store

WINDOW_SECONDS = 60.0
"""The window `creates_per_minute` counts over."""
UNFINISHED_RETRY_SECONDS = 5
"""The retry delay answered when the unfinished quota is full: when one of the tenant's
operations ends is not known beforehand."""


@dataclass(frozen=True, slots=True)
class Quota:
    """0 is unlimited."""

    unfinished: int = 0
    creates_per_minute: int = 0


@dataclass(frozen=True, slots=True)
class Quotas:
    default: Quota = Quota()
    tenants: Mapping[str, Quota] = field(default_factory=dict)
    any: bool = field(init=False)
    """Some tenant has a limit: without one, creates read nothing for quotas."""

    def __post_init__(self) -> None:
        limited = (
            q.unfinished or q.creates_per_minute for q in (self.default, *self.tenants.values())
        )
        object.__setattr__(self, "any", any(limited))  # once, not per create

    def of(self, tenant: str) -> Quota:
        return self.tenants.get(tenant, self.default)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Quotas:
        """Raises ValueError naming the setting that is malformed."""
        default = Quota(
            unfinished=_count("LONGOPS_QUOTA_UNFINISHED", environ.get("LONGOPS_QUOTA_UNFINISHED")),
            creates_per_minute=_count(
                "LONGOPS_QUOTA_CREATES_PER_MINUTE", environ.get("LONGOPS_QUOTA_CREATES_PER_MINUTE")
            ),
        )
        return cls(default, parse_tenant_quotas(environ.get("LONGOPS_QUOTA_TENANTS", ""), default))


def _count(name: str, text: str | None) -> int:
    if text is None or not text.strip():
        return 0
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ValueError(f"{name} must be a whole number from 0 (unlimited), not {text[:40]!r}")
    return int(text)


def parse_tenant_quotas(text: str, default: Quota) -> dict[str, Quota]:
    """`tenantA:unfinished=10,creates_per_minute=60;tenantB:unfinished=0` → per-tenant
    quotas; a limit a tenant's entry leaves out is the default's."""
    setting = "LONGOPS_QUOTA_TENANTS"
    tenants: dict[str, Quota] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        tenant, sep, limits = entry.partition(":")
        tenant = tenant.strip()
        if not sep or not tenant:
            raise ValueError(f"{setting}: expected TENANT:unfinished=N,... not {entry[:40]!r}")
        values = {
            "unfinished": default.unfinished,
            "creates_per_minute": default.creates_per_minute,
        }
        for item in filter(None, (i.strip() for i in limits.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in values:
                raise ValueError(
                    f"{setting}: tenant {tenant[:40]!r}: expected unfinished=N or"
                    f" creates_per_minute=N, not {item[:40]!r}"
                )
            values[key] = _count(f"{setting}: tenant {tenant[:40]!r}: {key}", value)
        tenants[tenant] = Quota(**values)
    return tenants


class QuotaExceeded(Exception):
    """A create refused because the tenant is at a quota: nothing was stored."""

    def __init__(self, subject: str, description: str, retry_after: int) -> None:
        super().__init__(description)
        self.subject = subject
        self.description = description
        self.retry_after = retry_after


async def check_quota(
    store: Store, quota: Quota, tenant: str, request_id: str | None, now: float
) -> None:
    """Raise `QuotaExceeded` when `tenant` may not create another operation now. A
    repeated `request_id` of a stored operation is let through: it creates nothing."""
    if not (quota.unfinished or quota.creates_per_minute):
        return
    usage = await store.tenant_usage(
        tenant,
        unfinished_limit=quota.unfinished,
        creates_limit=quota.creates_per_minute,
        request_id=request_id,
    )
    if usage.request_id_stored:
        return
    subject = f"tenant:{tenant}"
    if quota.unfinished and usage.unfinished >= quota.unfinished:
        raise QuotaExceeded(
            subject,
            f"Quota exceeded: at most {quota.unfinished} unfinished operations per tenant;"
            " wait for some to finish, or cancel some.",
            UNFINISHED_RETRY_SECONDS,
        )
    if quota.creates_per_minute:
        recent = [t for t in usage.newest_create_times if t > now - WINDOW_SECONDS]
        if len(recent) >= quota.creates_per_minute:
            frees = min(recent) + WINDOW_SECONDS - now
            raise QuotaExceeded(
                subject,
                f"Quota exceeded: at most {quota.creates_per_minute} operations created"
                " per minute per tenant.",
                max(1, math.ceil(frees)),
            )
