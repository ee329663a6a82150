-- Where each mailbox source left off: Gmail's history id (validity NULL) or IMAP's last UID
-- with the folder's UIDVALIDITY. Written only after a sync pass handled everything before the
-- position, so a crash repeats work (the mailbox_messages ledger makes that harmless) and never
-- skips mail. Positions are 64-bit unsigned numbers kept as decimal text (Gmail sends them as
-- strings and they can exceed BIGINT); the poller compares them as numbers and only moves them
-- forward, except for a new UIDVALIDITY.
CREATE TABLE IF NOT EXISTS mailbox_cursors (
    agent_email  TEXT        NOT NULL,
    source       TEXT        NOT NULL,
    mailbox      TEXT        NOT NULL,
    position     TEXT        NOT NULL CHECK (position ~ '^[0-9]{1,20}$'),
    validity     BIGINT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_email, source, mailbox)
);
