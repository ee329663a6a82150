-- Every mailbox message the poller has taken, recorded before it is published: a restart or a
-- second poller finds the row and never publishes it under a new id, and an unparseable message
-- is kept here with its reason instead of disappearing.
CREATE TABLE IF NOT EXISTS mailbox_messages (
    agent_email  TEXT        NOT NULL,
    mailbox_id   TEXT        NOT NULL,
    message_id   TEXT        NOT NULL,
    state        TEXT        NOT NULL CHECK (state IN ('claimed', 'published', 'unparseable')),
    priority     SMALLINT,
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_email, mailbox_id)
);
