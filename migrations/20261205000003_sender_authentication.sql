-- Whether the email's sender was authenticated, as the poller read it from the receiving
-- server's `Authentication-Results` header (RFC 8601) for one of the mailbox's trusted
-- authserv-ids (`mailbox.authserv_ids`; docs/DELIVERY.md, "Unauthenticated senders"):
--   sender_auth         'pass' (DMARC passed, or, without a DMARC result, SPF or DKIM passed for
--                       the From domain) or 'fail' (anything else, including no header from a
--                       trusted server at all);
--   sender_auth_detail  what passed ("dmarc=pass (mx.example)"), or why it failed ("dmarc=fail
--                       (mx.example)", "spf=fail and dkim=fail (mx.example)", "no
--                       Authentication-Results from mx.example").
-- The sender drafts the reply to a 'fail' instead of sending it unless the mailbox's policy is
-- `mailbox.unauthenticated = "send"`. Rows written before this migration have NULLs: such
-- mail was never checked, and the sender treats it as unauthenticated.
ALTER TABLE mailbox_messages
    ADD COLUMN IF NOT EXISTS sender_auth        TEXT CHECK (sender_auth IN ('pass', 'fail')),
    ADD COLUMN IF NOT EXISTS sender_auth_detail TEXT;
