-- Secondary indexes lead with the value they look up, not with agent_email.
--
-- An index on (agent_email, x) answers `agent_email = $1` just as the primary key
-- (agent_email, id) does. While a table is new and small (before autovacuum's first ANALYZE) the
-- planner sees no difference between them, and the plans a connection keeps (sqlx prepares every
-- statement) went on using the secondary index for lookups by primary key: the sender's update of
-- its reply read every one of the agent's replies to change one, and the poller's updates every
-- one of its messages, so each email cost more than the one before (`mailroom bench`, a fresh
-- database: 500 rows read per update after 500 emails). Led by the looked-up value, these
-- indexes serve the same lookups (the thread of a follow-up, a fingerprint, a person's reply)
-- and can never stand in for the primary key.
DROP INDEX IF EXISTS mailbox_messages_rfc_message_id_idx;
CREATE INDEX mailbox_messages_rfc_message_id_idx ON mailbox_messages (rfc_message_id, agent_email);

DROP INDEX IF EXISTS replies_reply_message_id_idx;
CREATE INDEX replies_reply_message_id_idx ON replies (reply_message_id, agent_email);

DROP INDEX IF EXISTS responses_thread_idx;
CREATE INDEX responses_thread_idx ON responses ((send_message->>'thread_id'), agent_email);

DROP INDEX IF EXISTS person_replies_message_id_idx;
CREATE INDEX person_replies_message_id_idx ON person_replies (message_id, agent_email);

-- Still one holder per fingerprint and mailbox (the uniqueness does not depend on the order).
DROP INDEX IF EXISTS mailbox_messages_fingerprint_idx;
CREATE UNIQUE INDEX mailbox_messages_fingerprint_idx ON mailbox_messages (fingerprint, agent_email);
