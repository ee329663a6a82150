-- Messages a person of the mailbox sent (found in its Sent folder, or Gmail's SENT), that the
-- sender did not send itself: a thread in which a person has replied is theirs, and later
-- customer mail in it is drafted rather than answered automatically (mailbox.after_person_reply).
-- `refs` holds the reply's In-Reply-To and References, by which a customer's follow-up in the
-- same thread is recognised; `thread_id` the provider's conversation id (Gmail's threadId).
CREATE TABLE IF NOT EXISTS person_replies (
    agent_email  TEXT        NOT NULL,
    source_id    TEXT        NOT NULL,
    message_id   TEXT,
    refs         TEXT[]      NOT NULL DEFAULT '{}',
    thread_id    TEXT,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_email, source_id)
);

CREATE INDEX IF NOT EXISTS person_replies_message_id_idx ON person_replies (agent_email, message_id);
CREATE INDEX IF NOT EXISTS person_replies_refs_idx ON person_replies USING GIN (refs);
