-- Which version of the full-text analysis (vector_store::lexical::ANALYSIS_VERSION: bigrams for
-- spaceless scripts, Cyrillic prefixes, …) each chunk's tsv was computed with. The analysis is
-- Rust code the database cannot run, so rows written before (and rows the full-text migration
-- indexed with plain `simple`) get 1 here and are analysed again by the document ingester when
-- it starts (vector_store::lexical::reindex_outdated), in batches, while searches go on.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS text_analysis SMALLINT NOT NULL DEFAULT 1;

-- Finds the rows still to analyse again without scanning the table; a later version of the
-- analysis replaces it with one for its own number.
CREATE INDEX IF NOT EXISTS chunks_outdated_analysis_idx ON chunks (agent_email) WHERE text_analysis < 2;
