-- The lookups of a follow-up's thread, by the ids its References name and by its Gmail thread,
-- read only the rows of that thread (the person-reply check runs for every reply decided).
CREATE INDEX IF NOT EXISTS mailbox_messages_rfc_message_id_idx ON mailbox_messages (agent_email, rfc_message_id);
CREATE INDEX IF NOT EXISTS replies_reply_message_id_idx ON replies (agent_email, reply_message_id);
CREATE INDEX IF NOT EXISTS responses_thread_idx ON responses (agent_email, (send_message->>'thread_id'));
