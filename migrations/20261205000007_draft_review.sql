-- A draft left for a person, and whether a person has taken it up. `draft_digest` is the
-- content digest (sender and decoded body, `mail_mime::ParsedEmail::content_digest`) of a reply
-- the sender left as a draft (`drafted`, `in_doubt`). When a customer writes again in that
-- thread, the sender reads the draft back from its sink: edited (another digest), or gone
-- (sent or discarded by a person), the thread is a person's, recorded in `person_replies` under
-- the source id `draft:<reply Message-ID>`, and the new reply becomes a draft too
-- (`mailbox.after_person_reply`). Rows drafted before this migration have NULL and are not read
-- back.
ALTER TABLE replies ADD COLUMN IF NOT EXISTS draft_digest TEXT;
