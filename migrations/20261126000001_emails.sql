-- The email ledger: one row per mailbox message the pipeline has taken in, keyed by the agent's
-- mailbox and the mailbox's own id, so a restart or redelivery never takes one in twice. Each
-- stage moves `state` forward; later migrations add the stage-specific tables.
CREATE TABLE IF NOT EXISTS emails (
    agent_email    TEXT        NOT NULL,
    email_id       TEXT        NOT NULL,
    message_id     TEXT        NOT NULL,
    correlation_id TEXT        NOT NULL,
    state          TEXT        NOT NULL DEFAULT 'received',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_email, email_id)
);

CREATE INDEX IF NOT EXISTS emails_state_idx ON emails (state);
