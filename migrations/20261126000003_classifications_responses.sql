-- One classification per email (agent mailbox + mailbox id): a redelivered message finds it and
-- re-publishes the same emails.to_respond message instead of classifying again.
CREATE TABLE IF NOT EXISTS classifications (
    agent_email         TEXT             NOT NULL,
    email_id            TEXT             NOT NULL,
    message_id          TEXT             NOT NULL,
    correlation_id      TEXT,
    is_support_inquiry  BOOLEAN          NOT NULL,
    category            TEXT             NOT NULL,
    confidence          DOUBLE PRECISION NOT NULL,
    llm_provider        TEXT             NOT NULL,
    reason              TEXT,
    respond_message_id  TEXT,
    created_at          TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_email, email_id)
);

-- One drafted reply per email; redeliveries re-publish the stored emails.to_send message.
CREATE TABLE IF NOT EXISTS responses (
    agent_email         TEXT        NOT NULL,
    email_id            TEXT        NOT NULL,
    respond_message_id  TEXT        NOT NULL,
    send_message_id     TEXT        NOT NULL,
    send_message        JSONB       NOT NULL,
    llm_provider        TEXT        NOT NULL,
    escalate            BOOLEAN     NOT NULL DEFAULT false,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_email, email_id)
);
