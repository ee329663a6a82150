-- Chunks belong to their document. Deleting a document deletes its chunks in the same
-- statement, and no chunk can be written for a document that is gone: the foreign-key check
-- also locks the document row while a chunk write is in flight, so a delete waits for it.
--
-- chunks.document_id is TEXT (the vector-store API names documents by string, as Pinecone ids
-- are strings); documents.document_id is a UUID. A stored text copy of the key bridges the two.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS document_key TEXT
    GENERATED ALWAYS AS (document_id::text) STORED;
ALTER TABLE documents ADD CONSTRAINT documents_document_key_unique UNIQUE (document_key);

-- Chunks whose document row is gone are exactly the leftovers this constraint prevents.
DELETE FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.document_key = c.document_id);
ALTER TABLE chunks ADD CONSTRAINT chunks_document_fk
    FOREIGN KEY (document_id) REFERENCES documents (document_key) ON DELETE CASCADE;

-- The agent address is matched case-insensitively: `Support@x` and `support@x` are one mailbox.
-- Everything is stored in lower case from now on; existing rows are folded here.
UPDATE documents SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email);
UPDATE chunks SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email);
INSERT INTO vector_index_versions (agent_email, version)
    SELECT lower(agent_email), max(version) + 1 FROM vector_index_versions GROUP BY lower(agent_email)
    ON CONFLICT (agent_email) DO UPDATE SET version = EXCLUDED.version;
DELETE FROM vector_index_versions WHERE agent_email <> lower(agent_email);
-- The mail tables are keyed by agent: fold a row unless its lower-case twin already exists
-- (then the twin is the one in use, and the old row stays as history).
UPDATE emails SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email)
    AND NOT EXISTS (SELECT 1 FROM emails o WHERE o.agent_email = lower(emails.agent_email) AND o.email_id = emails.email_id);
UPDATE classifications SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email)
    AND NOT EXISTS (SELECT 1 FROM classifications o WHERE o.agent_email = lower(classifications.agent_email) AND o.email_id = classifications.email_id);
UPDATE responses SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email)
    AND NOT EXISTS (SELECT 1 FROM responses o WHERE o.agent_email = lower(responses.agent_email) AND o.email_id = responses.email_id);
UPDATE replies SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email)
    AND NOT EXISTS (SELECT 1 FROM replies o WHERE o.agent_email = lower(replies.agent_email) AND o.email_id = replies.email_id);
UPDATE mailbox_messages SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email)
    AND NOT EXISTS (SELECT 1 FROM mailbox_messages o WHERE o.agent_email = lower(mailbox_messages.agent_email) AND o.mailbox_id = mailbox_messages.mailbox_id);
UPDATE mailbox_cursors SET agent_email = lower(agent_email) WHERE agent_email <> lower(agent_email)
    AND NOT EXISTS (SELECT 1 FROM mailbox_cursors o WHERE o.agent_email = lower(mailbox_cursors.agent_email) AND o.source = mailbox_cursors.source AND o.mailbox = mailbox_cursors.mailbox);

-- A cascaded delete changes the agent's chunks like any other write: bump the version every
-- searching process compares with its in-memory index.
CREATE OR REPLACE FUNCTION documents_bump_index_version() RETURNS trigger AS $$
BEGIN
    INSERT INTO vector_index_versions (agent_email, version) VALUES (OLD.agent_email, 1)
    ON CONFLICT (agent_email) DO UPDATE SET version = vector_index_versions.version + 1;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS documents_deleted_bump_index ON documents;
CREATE TRIGGER documents_deleted_bump_index AFTER DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_bump_index_version();
