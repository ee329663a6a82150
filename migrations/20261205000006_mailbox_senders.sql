-- What each sender process found wrong with a mailbox's sending side (settings that cannot
-- work, an outbox that refuses its credentials), refreshed every registry.refresh_secs, for
-- `mailroom status`; NULL when it sends fine.
CREATE TABLE IF NOT EXISTS mailbox_senders (
    address     TEXT        NOT NULL,
    sender      TEXT        NOT NULL,
    problem     TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (address, sender)
);
