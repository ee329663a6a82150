-- The outcome of each mailbox message as the poller last applied it at the mailbox (a label, a
-- keyword): answered, drafted (a draft reply waits for a person), needs-person, not-support or
-- failed. NULL: no outcome yet. The poller derives the outcome from what the later stages
-- recorded (classifications, replies) and applies each new one once; `needs-person` and `failed`
-- can still change (a replayed dead letter may be answered later), the others are final.
ALTER TABLE mailbox_messages
    ADD COLUMN IF NOT EXISTS outcome    TEXT CHECK (outcome IN ('answered', 'drafted', 'needs-person', 'not-support', 'failed')),
    ADD COLUMN IF NOT EXISTS outcome_at TIMESTAMPTZ;

-- Each pass looks only at messages whose outcome may still change.
CREATE INDEX IF NOT EXISTS mailbox_messages_open_outcome_idx ON mailbox_messages (agent_email, created_at)
    WHERE outcome IS NULL OR outcome IN ('needs-person', 'failed');
