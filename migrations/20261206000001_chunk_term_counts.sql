-- Lexical search at scale (one deployment, many agents, a million chunks).
--
-- 1. Term counts kept in PostgreSQL. Full-text search weighs a question's terms by how many of
--    the agent's chunks contain each (BM25's inverse document frequency). Searching processes
--    used to count them from the chunks once per agent and keep them in memory: seconds per
--    agent at 20,000 chunks, and memory in every rag-generator for every agent it serves. The
--    counts are now kept here, per agent and text-search configuration, by triggers on `chunks`
--    — so every write counts, whoever makes it: the PostgreSQL vector store, the Pinecone
--    catalogue, a document delete that cascades — and a search reads the few rows of its
--    question's terms.
-- 2. The full-text index includes the agent and the text-search configuration (`btree_gin`), so
--    finding the candidates of one agent's question under one configuration reads only those
--    postings: with the agent alone, a question's terms probed under a configuration few of the
--    agent's chunks use also matched thousands of its other chunks, each read and dropped.

CREATE EXTENSION IF NOT EXISTS btree_gin;

-- The counts are computed and the triggers installed while no chunk can be written, so the
-- counts start exact.
LOCK TABLE chunks IN SHARE ROW EXCLUSIVE MODE;

-- How many of the agent's chunks written with one configuration contain the lexeme.
CREATE TABLE IF NOT EXISTS chunk_term_counts (
    agent_email   TEXT   NOT NULL,
    search_config TEXT   NOT NULL,
    lexeme        TEXT   NOT NULL,
    chunks        BIGINT NOT NULL,
    PRIMARY KEY (agent_email, search_config, lexeme)
);

-- How many of the agent's chunks were written with each configuration.
CREATE TABLE IF NOT EXISTS chunk_config_counts (
    agent_email   TEXT   NOT NULL,
    search_config TEXT   NOT NULL,
    chunks        BIGINT NOT NULL,
    PRIMARY KEY (agent_email, search_config)
);

DELETE FROM chunk_term_counts;
DELETE FROM chunk_config_counts;
INSERT INTO chunk_term_counts (agent_email, search_config, lexeme, chunks)
    SELECT c.agent_email, c.search_config::text, u.lexeme, count(*)
    FROM chunks c CROSS JOIN LATERAL unnest(c.tsv) u
    GROUP BY 1, 2, 3;
INSERT INTO chunk_config_counts (agent_email, search_config, chunks)
    SELECT agent_email, search_config::text, count(*) FROM chunks GROUP BY 1, 2;

-- Writers of one agent's chunks take their turn: the common terms' rows are shared by all of the
-- agent's documents, and one lock per agent, taken in address order, means two writers never
-- hold each other's rows.
CREATE OR REPLACE FUNCTION chunk_counts_lock(agents TEXT[]) RETURNS void AS $$
DECLARE
    a TEXT;
BEGIN
    FOR a IN SELECT DISTINCT x FROM unnest(agents) x ORDER BY x LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('mailroom.chunk_counts:' || a, 0));
    END LOOP;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION chunks_counted_in() RETURNS trigger AS $$
BEGIN
    PERFORM chunk_counts_lock(ARRAY(SELECT DISTINCT agent_email FROM added));
    INSERT INTO chunk_term_counts AS t (agent_email, search_config, lexeme, chunks)
        SELECT a.agent_email, a.search_config::text, u.lexeme, count(*)
        FROM added a CROSS JOIN LATERAL unnest(a.tsv) u
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
    ON CONFLICT (agent_email, search_config, lexeme) DO UPDATE SET chunks = t.chunks + EXCLUDED.chunks;
    INSERT INTO chunk_config_counts AS t (agent_email, search_config, chunks)
        SELECT agent_email, search_config::text, count(*) FROM added GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (agent_email, search_config) DO UPDATE SET chunks = t.chunks + EXCLUDED.chunks;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION chunks_counted_out() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM removed) THEN
        RETURN NULL;
    END IF;
    PERFORM chunk_counts_lock(ARRAY(SELECT DISTINCT agent_email FROM removed));
    UPDATE chunk_term_counts t SET chunks = t.chunks - g.chunks
        FROM (SELECT r.agent_email, r.search_config::text AS search_config, u.lexeme, count(*) AS chunks
              FROM removed r CROSS JOIN LATERAL unnest(r.tsv) u GROUP BY 1, 2, 3) g
        WHERE t.agent_email = g.agent_email AND t.search_config = g.search_config AND t.lexeme = g.lexeme;
    DELETE FROM chunk_term_counts t WHERE t.chunks <= 0
        AND (t.agent_email, t.search_config, t.lexeme) IN
            (SELECT r.agent_email, r.search_config::text, u.lexeme FROM removed r CROSS JOIN LATERAL unnest(r.tsv) u);
    UPDATE chunk_config_counts t SET chunks = t.chunks - g.n
        FROM (SELECT agent_email, search_config::text AS search_config, count(*) AS n FROM removed GROUP BY 1, 2) g
        WHERE t.agent_email = g.agent_email AND t.search_config = g.search_config;
    DELETE FROM chunk_config_counts WHERE chunks <= 0
        AND agent_email IN (SELECT DISTINCT agent_email FROM removed);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS chunks_count_inserted ON chunks;
CREATE TRIGGER chunks_count_inserted AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION chunks_counted_in();
DROP TRIGGER IF EXISTS chunks_count_deleted ON chunks;
CREATE TRIGGER chunks_count_deleted AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION chunks_counted_out();
-- An update (a migration folding addresses, say) is a removal and an insertion.
DROP TRIGGER IF EXISTS chunks_count_updated_out ON chunks;
CREATE TRIGGER chunks_count_updated_out AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION chunks_counted_out();
DROP TRIGGER IF EXISTS chunks_count_updated_in ON chunks;
CREATE TRIGGER chunks_count_updated_in AFTER UPDATE ON chunks
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION chunks_counted_in();

-- One agent's postings under one configuration: a question's rarer terms find its candidates
-- without reading other agents' or other configurations' postings of the same terms.
-- (`regconfig` has no GIN operator class; its oid does.) The search names the same expression.
CREATE INDEX IF NOT EXISTS chunks_agent_config_tsv_idx ON chunks USING GIN (agent_email, (search_config::oid), tsv);
DROP INDEX IF EXISTS chunks_tsv_idx;
-- Its reason was counting an agent's terms per configuration at search time; the counts above
-- replace that, and the GIN index serves the (agent, configuration) lookups of a search.
DROP INDEX IF EXISTS chunks_agent_config_idx;
