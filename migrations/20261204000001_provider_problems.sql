-- Configuration errors of remote providers (issue 12): a wrong or revoked key, a missing
-- permission, a retired model. The worker that meets one upserts its row on every occurrence
-- and deletes it when the provider answers again, so `mailroom status` shows what an operator
-- has to fix even while the failover chain keeps answering from the next provider.
CREATE TABLE IF NOT EXISTS provider_problems (
    provider    TEXT NOT NULL,
    operation   TEXT NOT NULL,
    worker      TEXT NOT NULL,
    status      INTEGER,
    message     TEXT NOT NULL,
    occurrences BIGINT NOT NULL DEFAULT 1,
    first_seen  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, operation)
);
