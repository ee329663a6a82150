-- Uploaded documents and their ingestion progress (upload-api creates the row, doc-ingester
-- moves it through extracting → embedding → ready, or failed with a reason).
CREATE TABLE IF NOT EXISTS documents (
    document_id   UUID        PRIMARY KEY,
    agent_email   TEXT        NOT NULL,
    filename      TEXT        NOT NULL,
    stored_path   TEXT        NOT NULL,
    content_type  TEXT        NOT NULL,
    size_bytes    BIGINT      NOT NULL,
    status        TEXT        NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'extracting', 'embedding', 'ready', 'failed')),
    progress      SMALLINT    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    page_count    INTEGER,
    chunk_count   INTEGER     NOT NULL DEFAULT 0,
    error_type    TEXT,
    error         TEXT,
    message_id    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS documents_agent_idx ON documents (agent_email, created_at);

-- Chunks of the PostgreSQL vector store. The embedding is stored as little-endian f32 bytes:
-- searches load an agent's vectors once into memory and score them exactly in Rust.
CREATE TABLE IF NOT EXISTS chunks (
    agent_email  TEXT    NOT NULL,
    document_id  TEXT    NOT NULL,
    chunk_index  INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    page         INTEGER,
    text         TEXT    NOT NULL,
    embedding    BYTEA   NOT NULL,
    PRIMARY KEY (document_id, chunk_index)
);

CREATE INDEX IF NOT EXISTS chunks_agent_idx ON chunks (agent_email);

-- Bumped on every change to an agent's chunks, so each process's in-memory index knows when
-- to reload.
CREATE TABLE IF NOT EXISTS vector_index_versions (
    agent_email TEXT   PRIMARY KEY,
    version     BIGINT NOT NULL
);
