-- The mailbox registry: every support mailbox one deployment serves, managed with
-- `mailroom mailbox add|list|show|update|disable|enable`. `settings` holds the mailbox's own
-- `mailbox`, `outbox` and `sender` tables, laid over the deployment's settings (the same keys as
-- config/default.toml); secrets only as references (`{"env": "VAR"}` or `{"file": "/path"}`),
-- never the secret itself. An empty registry means the one mailbox of `[mailbox]`/`[outbox]`.
CREATE TABLE IF NOT EXISTS mailboxes (
    address     TEXT        PRIMARY KEY CHECK (address = lower(address) AND address LIKE '%_@_%'),
    enabled     BOOLEAN     NOT NULL DEFAULT true,
    settings    JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which poller process reads each registry mailbox (a lease it renews every pass; a dead
-- poller's mailboxes are taken over when it runs out), and how its last pass went, for
-- `mailroom status`.
CREATE TABLE IF NOT EXISTS mailbox_pollers (
    address       TEXT        PRIMARY KEY,
    owner         TEXT        NOT NULL,
    lease_until   TIMESTAMPTZ NOT NULL,
    last_pass_at  TIMESTAMPTZ,
    last_error    TEXT,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
