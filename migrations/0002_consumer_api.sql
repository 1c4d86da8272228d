-- 0002: the consumer API (issue 8): date provenance, modified date, author list, full-text
-- search, notifications for duplicates and revisions, the story_articles view, and the
-- newsagg_reader / newsagg_writer roles. Applied by `newsagg db init` to databases made
-- from 0001; a fresh database gets all of this from schema.sql.

ALTER TABLE articles ADD COLUMN IF NOT EXISTS published_source text
    CHECK (published_source IN ('feed', 'metadata', 'url', 'text'));
ALTER TABLE articles ADD COLUMN IF NOT EXISTS modified_at timestamptz;
ALTER TABLE articles ADD COLUMN IF NOT EXISTS modified_source text
    CHECK (modified_source IN ('feed', 'metadata', 'url', 'text'));
ALTER TABLE articles ADD COLUMN IF NOT EXISTS authors text[] NOT NULL DEFAULT '{}';

-- Full-text search: title weighted above text, with the language's own stemming when known.
CREATE OR REPLACE FUNCTION newsagg_ts_config(language text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE language
        WHEN 'ar' THEN 'arabic' WHEN 'da' THEN 'danish' WHEN 'de' THEN 'german'
        WHEN 'el' THEN 'greek' WHEN 'en' THEN 'english' WHEN 'es' THEN 'spanish'
        WHEN 'fi' THEN 'finnish' WHEN 'fr' THEN 'french' WHEN 'hu' THEN 'hungarian'
        WHEN 'id' THEN 'indonesian' WHEN 'it' THEN 'italian' WHEN 'lt' THEN 'lithuanian'
        WHEN 'nb' THEN 'norwegian' WHEN 'nl' THEN 'dutch' WHEN 'no' THEN 'norwegian'
        WHEN 'pt' THEN 'portuguese' WHEN 'ro' THEN 'romanian' WHEN 'ru' THEN 'russian'
        WHEN 'sv' THEN 'swedish' WHEN 'tr' THEN 'turkish'
        ELSE 'simple' END::regconfig
$$;
COMMENT ON FUNCTION newsagg_ts_config(text) IS 'The text search configuration for an ISO 639-1 language code (simple when there is none): use it in queries, e.g. websearch_to_tsquery(newsagg_ts_config(''en''), ''climate summit'').';

ALTER TABLE articles ADD COLUMN IF NOT EXISTS search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector(newsagg_ts_config(language), coalesce(title, '')), 'A')
    || setweight(to_tsvector(newsagg_ts_config(language), text), 'B')
) STORED;
CREATE INDEX IF NOT EXISTS articles_search ON articles USING gin (search);
-- unique_articles newest first, served from an index instead of a sort of every original.
CREATE INDEX IF NOT EXISTS articles_originals_newest
    ON articles ((coalesce(published_at, first_seen_at)) DESC) WHERE duplicate_of IS NULL;

COMMENT ON COLUMN articles.published_source IS 'Where published_at came from: feed, metadata (the page''s meta tags, JSON-LD, <time>), url (a date in the URL) or text (found in the visible text, the least certain). Dates in the future or before 1995 are rejected.';
COMMENT ON COLUMN articles.modified_at IS 'When the page says it was last updated, kept apart from published_at; NULL when it does not say or says the same.';
COMMENT ON COLUMN articles.modified_source IS 'Where modified_at came from (same values as published_source).';
COMMENT ON COLUMN articles.authors IS 'Authors as a list (author holds the same names joined by "; ").';
COMMENT ON COLUMN articles.search IS 'Full-text search vector: title (weight A) and text (weight B), stemmed with newsagg_ts_config(language). Query with search @@ websearch_to_tsquery(...); GIN-indexed.';

-- ---------------------------------------------------------------------------------------
-- Notifications, sent at commit (a listener never sees an id it cannot read yet):
--   articles            id of each new original article
--   article_duplicates  id of each new duplicate (its duplicate_of tells of what)
--   article_revisions   id of an article whose text changed (a revision was kept)
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION newsagg_notify_article() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify(CASE WHEN NEW.duplicate_of IS NULL THEN 'articles'
                               ELSE 'article_duplicates' END, NEW.id::text);
    ELSIF NEW.revision > OLD.revision THEN
        PERFORM pg_notify('article_revisions', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION newsagg_notify_article() IS 'NOTIFY articles (new original), article_duplicates (new duplicate) or article_revisions (changed text), with the article id as payload.';

DROP TRIGGER IF EXISTS articles_notify ON articles;
CREATE TRIGGER articles_notify AFTER INSERT ON articles
    FOR EACH ROW EXECUTE FUNCTION newsagg_notify_article();
COMMENT ON TRIGGER articles_notify ON articles IS 'Notifies listeners of each new article (see newsagg_notify_article).';
DROP TRIGGER IF EXISTS articles_notify_revision ON articles;
CREATE TRIGGER articles_notify_revision AFTER UPDATE OF revision ON articles
    FOR EACH ROW EXECUTE FUNCTION newsagg_notify_article();
COMMENT ON TRIGGER articles_notify_revision ON articles IS 'Notifies listeners when an article''s text changed.';

CREATE OR REPLACE VIEW story_articles AS
SELECT st.id AS story_id, st.title AS story_title, st.first_seen_at AS story_first_seen_at,
       st.last_seen_at AS story_last_seen_at, a.id AS article_id, a.title, a.canonical_url,
       s.name AS source, a.sitename, a.published_at, a.duplicate_of, a.duplicate_kind
  FROM stories st
  JOIN articles a ON a.story_id = st.id
  LEFT JOIN sources s ON s.id = a.source_id;
COMMENT ON VIEW story_articles IS 'Each story with its articles and their sources (duplicates included; filter duplicate_of IS NULL for one row per report). Filter by story_id: it uses articles_story.';

-- ---------------------------------------------------------------------------------------
-- Roles. newsagg_reader reads the public tables and views and nothing else; newsagg_writer
-- is what workers need (no superuser, no DDL). Both are NOLOGIN groups: grant them to login
-- roles (README, "Querying"). Creating roles needs CREATEROLE; without it they are skipped
-- with a notice and the grants follow once an administrator creates them.
-- ---------------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'newsagg_reader') THEN
        CREATE ROLE newsagg_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'newsagg_writer') THEN
        CREATE ROLE newsagg_writer NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'newsagg: no CREATEROLE right, roles newsagg_reader/newsagg_writer not created';
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'newsagg_reader') THEN
        GRANT USAGE ON SCHEMA public TO newsagg_reader;
        GRANT SELECT ON sources, crawls, fetches, articles, article_revisions, stories,
                        discovered_urls, unique_articles, story_articles, source_status,
                        crawl_history TO newsagg_reader;
        GRANT EXECUTE ON FUNCTION newsagg_ts_config(text) TO newsagg_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'newsagg_writer') THEN
        GRANT USAGE ON SCHEMA public TO newsagg_writer;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO newsagg_writer;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO newsagg_writer;
    END IF;
END;
$$;
