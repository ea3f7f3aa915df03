"""The webhooks component's tables, per backend (migrated by `Webhooks.open`).

- `webhooks` and `webhook_secrets`: the registry (a secret with an `expire_time` is a
  rotated one, signing until then);
- `webhook_events`: the outbox. A trigger on `operations` writes a row in the same
  transaction as the update that ends an operation, whichever statement that is
  (a finish, the last failed attempt, a cancel, a recovered lease), but only when the
  operation has a per-request webhook or its tenant an enabled one: operations nobody
  listens to pay one indexed lookup of an empty index. The trigger fires on updates
  of `state` alone, so heartbeats and progress never run it;
- `webhook_deliveries`: one row per event and target, claimed under a lease; and
  `webhook_attempts`, the log of each try;
- `longops_signing_keys`: the RSA keys that sign per-request deliveries' JWTs.
"""

from __future__ import annotations

from longops.engine.store.database import Migration

_DONE = "('SUCCEEDED', 'FAILED', 'CANCELLED')"
_EVENT_COLUMNS = "operation_id, name, kind, tenant, state, error, webhook, time"
_EVENT_VALUES = (
    "NEW.id, NEW.name, NEW.kind, NEW.tenant, NEW.state, NEW.error, NEW.webhook, NEW.update_time"
)
_LISTENED = (
    "NEW.webhook IS NOT NULL"
    " OR EXISTS (SELECT 1 FROM webhooks WHERE tenant = NEW.tenant AND state = 'enabled')"
)

_TABLES = """
    CREATE TABLE webhooks (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        name TEXT,
        uri TEXT NOT NULL,
        events {json} NOT NULL,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        failing_since {real},
        create_time {real} NOT NULL,
        update_time {real} NOT NULL
    );
    CREATE INDEX webhooks_tenant ON webhooks (tenant, seq);
    CREATE INDEX webhooks_enabled ON webhooks (tenant) WHERE state = 'enabled';
    CREATE TABLE webhook_secrets (
        webhook_id TEXT NOT NULL,
        secret TEXT NOT NULL,
        create_time {real} NOT NULL,
        expire_time {real},
        PRIMARY KEY (webhook_id, secret)
    );
    CREATE TABLE webhook_events (
        seq {serial},
        operation_id TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        state TEXT NOT NULL,
        error {json},
        webhook {json},
        time {real} NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        webhook_id TEXT,
        uri TEXT NOT NULL,
        event_type TEXT NOT NULL,
        operation TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        create_time {real} NOT NULL,
        retry_until {real} NOT NULL,
        next_attempt_time {real},
        last_status INTEGER,
        last_error TEXT,
        lease_owner TEXT,
        lease_expires {real}
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_time)
        WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, seq);
    CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, seq);
    CREATE INDEX webhook_deliveries_operation ON webhook_deliveries (tenant, operation, seq);
    CREATE INDEX webhook_deliveries_created ON webhook_deliveries (create_time);
    CREATE TABLE webhook_attempts (
        seq {serial},
        delivery_id TEXT NOT NULL,
        time {real} NOT NULL,
        status_code INTEGER,
        latency_seconds {real} NOT NULL,
        error TEXT,
        next_attempt_time {real}
    );
    CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);
    CREATE TABLE longops_signing_keys (
        kid TEXT PRIMARY KEY,
        private_pem TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        create_time {real} NOT NULL
    );
"""

SQLITE: list[Migration] = [
    Migration(
        _TABLES.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", json="BLOB", real="REAL")
        + f"""
    CREATE TRIGGER operations_webhook_event AFTER UPDATE OF state ON operations
    WHEN NEW.state IN {_DONE} AND OLD.state NOT IN {_DONE} AND ({_LISTENED})
    BEGIN
        INSERT INTO webhook_events ({_EVENT_COLUMNS}) VALUES ({_EVENT_VALUES});
    END;
    """
    ),
]

POSTGRES: list[Migration] = [
    Migration(
        _TABLES.format(
            serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            json="JSONB",
            real="DOUBLE PRECISION",
        )
        # A trigger's WHEN may not hold a subquery: the function checks for listeners.
        + f"""
    CREATE FUNCTION longops_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF {_LISTENED} THEN
            INSERT INTO webhook_events ({_EVENT_COLUMNS}) VALUES ({_EVENT_VALUES});
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER operations_webhook_event AFTER UPDATE OF state ON operations
        FOR EACH ROW WHEN (NEW.state IN {_DONE} AND OLD.state NOT IN {_DONE})
        EXECUTE FUNCTION longops_webhook_event();
    """
    ),
]

MIGRATIONS = {"sqlite": SQLITE, "postgresql": POSTGRES}
