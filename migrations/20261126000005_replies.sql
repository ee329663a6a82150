-- The sender's send log: one row per answered email (agent mailbox + the mailbox's email id).
-- A sender claims the row before it delivers and completes it after, so redelivery, a crash
-- between delivery and ack, or two senders racing never produce a second reply. The reply's
-- Message-ID is fixed at the first claim, so a sender that takes over a stale claim can ask the
-- sink whether that reply was already delivered.
CREATE TABLE replies (
    agent_email          TEXT        NOT NULL,
    email_id             TEXT        NOT NULL,
    -- emails.to_send message that made the claim.
    message_id           TEXT        NOT NULL,
    -- claimed: a sender is delivering it; sent / drafted / dry_run: done; in_doubt: a claim was
    -- taken over and the sink cannot tell whether the first delivery happened (a human decides).
    state                TEXT        NOT NULL CHECK (state IN ('claimed', 'sent', 'drafted', 'dry_run', 'in_doubt')),
    sink                 TEXT        NOT NULL,
    recipient            TEXT        NOT NULL,
    subject              TEXT        NOT NULL,
    reply_message_id     TEXT        NOT NULL,
    provider_message_id  TEXT,
    -- Why it became a draft (escalation, draft mode, reply throttle, delivery in doubt).
    draft_reason         TEXT,
    claim_token          UUID        NOT NULL,
    claimed_by           TEXT        NOT NULL,
    claimed_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at         TIMESTAMPTZ,
    PRIMARY KEY (agent_email, email_id)
);

CREATE INDEX replies_state_idx ON replies (state);
