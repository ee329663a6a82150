-- Extraction warnings (issue 11): a document can become ready with pages that no PDF engine
-- could read (they are skipped) or after the primary engine failed and a fallback read it.
-- `warnings` says so in words for GET /documents/{id} and `mailroom ingest`; `skipped_pages`
-- lists the 1-based page numbers that were left out. Both are reset on each ingestion.
ALTER TABLE documents
    ADD COLUMN warnings TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN skipped_pages INTEGER[] NOT NULL DEFAULT '{}';
