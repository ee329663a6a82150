-- What the poller read from each email, kept for the stages after it:
--   sender_address  the address a reply goes to (the parsed `From`), which the sender checks a
--                   reply's recipient against, so nothing arriving on a queue decides who gets mail;
--   rfc_message_id  the email's own `Message-ID` header, if it has one;
--   fingerprint     sender + Message-ID (or subject when there is none) + body, hashed: one
--                   email, however many copies of it arrive (an alias, a re-delivery, two
--                   sources), is published once; the other copies become `duplicate` rows;
--   duplicate_of    for a `duplicate`, the mailbox id of the copy that was published, whose
--                   outcome the copy shows.
-- Rows written before this migration have NULLs: their replies cannot be verified and are
-- refused by the sender (docs/DELIVERY.md, "What the sender trusts").
ALTER TABLE mailbox_messages
    ADD COLUMN IF NOT EXISTS sender_address TEXT,
    ADD COLUMN IF NOT EXISTS rfc_message_id TEXT,
    ADD COLUMN IF NOT EXISTS fingerprint    TEXT,
    ADD COLUMN IF NOT EXISTS duplicate_of   TEXT;

ALTER TABLE mailbox_messages DROP CONSTRAINT IF EXISTS mailbox_messages_state_check;
ALTER TABLE mailbox_messages ADD CONSTRAINT mailbox_messages_state_check
    CHECK (state IN ('claimed', 'published', 'unparseable', 'duplicate'));

-- One holder per fingerprint and mailbox (NULLs, from older rows and duplicates, are distinct):
-- two pollers preparing two copies at once cannot both publish.
CREATE UNIQUE INDEX IF NOT EXISTS mailbox_messages_fingerprint_idx ON mailbox_messages (agent_email, fingerprint);
