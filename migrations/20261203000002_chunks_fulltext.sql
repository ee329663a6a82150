-- Lexical (full-text) retrieval over the chunk catalogue, beside the vector search.
--
-- search_config is the text-search configuration chosen for the chunk's language when it was
-- written (english, russian, … or simple when no configuration suits it); tsv is the chunk's
-- text — with runs of Chinese/Japanese characters rewritten as overlapping character bigrams,
-- since those scripts put no spaces between words — parsed with that configuration. Both are
-- computed by the writer (vector_store::lexical), not by a generated column, because the bigram
-- rewriting happens in Rust. Rows written before this migration get the simple configuration
-- over their raw text until their document is re-ingested.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS search_config regconfig NOT NULL DEFAULT 'simple';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tsv tsvector;
UPDATE chunks SET tsv = to_tsvector('simple', text) WHERE tsv IS NULL;
ALTER TABLE chunks ALTER COLUMN tsv SET NOT NULL;

CREATE INDEX IF NOT EXISTS chunks_tsv_idx ON chunks USING GIN (tsv);
-- Lexical search runs once per configuration an agent's chunks use, and weighs terms by how
-- many of the agent's chunks contain them: both start from (agent, configuration).
CREATE INDEX IF NOT EXISTS chunks_agent_config_idx ON chunks (agent_email, search_config);
