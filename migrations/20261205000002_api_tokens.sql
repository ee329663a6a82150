-- Scoped tokens of the upload API (issue 15 §7), made by `mailroom token create`. The secret is
-- shown once and never stored: `token_hash` is the hex SHA-256 of the whole token (`mrt_…`), a
-- random 256-bit secret, so a fast hash is enough and lookups are by equality.
--   agent_email   the mailbox whose documents the token reaches, in its canonical form (trimmed,
--                 lower-case); NULL for an admin token, which reaches every mailbox's;
--   role          `upload` (upload, list, show and delete the agent's documents), `read` (list
--                 and show them) or `admin` (everything, for every agent);
--   last_used_at  when the upload API last accepted the token (updated at most once a minute);
--   revoked_at    set by `mailroom token revoke`; a revoked token is refused (401) from then on.
-- The configured `upload_api.token` is not in this table: it is an admin token of the settings.
CREATE TABLE IF NOT EXISTS api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_email  TEXT CHECK (agent_email = lower(btrim(agent_email)) AND agent_email <> ''),
    role         TEXT NOT NULL CHECK (role IN ('upload', 'read', 'admin')),
    token_hash   TEXT NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    label        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    -- An admin token has no agent; every other token has exactly one.
    CONSTRAINT api_tokens_scope_check CHECK ((role = 'admin') = (agent_email IS NULL))
);
