-- newsagg schema: the whole current schema, top to bottom.
--
-- Downstream consumers query these tables and views directly, so names and meanings are a
-- public API. `newsagg db init` applies this file to an empty database; an existing one is
-- brought up to date by the ordered, append-only migrations in migrations/ (a test checks
-- that migrating an old database gives exactly this schema). Every change to this file
-- therefore comes with a new migration; a column is never renamed or dropped in place.

-- ---------------------------------------------------------------------------------------
-- sources: where articles come from
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS sources (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    url             text        NOT NULL CHECK (url ~ '^https?://'),
    kind            text        NOT NULL CHECK (kind IN ('feed', 'sitemap', 'page')),
    enabled         boolean     NOT NULL DEFAULT true,
    crawl_interval  interval    NOT NULL DEFAULT interval '15 minutes'
                                CHECK (crawl_interval > interval '0'),
    min_interval    interval    CHECK (min_interval > interval '0'),
    max_interval    interval    CHECK (max_interval > interval '0'),
    next_crawl_at   timestamptz NOT NULL DEFAULT now(),
    healthy         boolean     NOT NULL DEFAULT true,
    schedule_reason text,
    etag            text,
    last_modified   text,
    body_sha256     text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    host_delay      real        CHECK (host_delay >= 0),
    host_concurrency integer    CHECK (host_concurrency >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE sources IS 'Where articles come from: one row per feed, sitemap or listing page that newsagg crawls.';
COMMENT ON COLUMN sources.id IS 'Surrogate key.';
COMMENT ON COLUMN sources.name IS 'Short unique name used by the CLI (newsagg crawl NAME) and in logs.';
COMMENT ON COLUMN sources.url IS 'URL of the feed (RSS, Atom, RDF, JSON Feed), sitemap (or sitemap index) or listing page.';
COMMENT ON COLUMN sources.kind IS 'How new article URLs are found: feed, sitemap or page (links on a listing page that look like articles).';
COMMENT ON COLUMN sources.enabled IS 'False: never crawled on schedule (a manual crawl still works).';
COMMENT ON COLUMN sources.crawl_interval IS 'Current time between scheduled crawls: adaptive, set after each read of the source from its publishing rate, its failures and its own hints (see schedule_reason).';
COMMENT ON COLUMN sources.min_interval IS 'Shortest interval the adaptive schedule may choose for this source; NULL: NEWSAGG_MIN_INTERVAL.';
COMMENT ON COLUMN sources.max_interval IS 'Longest interval the adaptive schedule may choose for this source; NULL: NEWSAGG_MAX_INTERVAL.';
COMMENT ON COLUMN sources.healthy IS 'False after NEWSAGG_UNHEALTHY_AFTER consecutive failed crawls: the source is then retried only every NEWSAGG_UNHEALTHY_INTERVAL, until a crawl succeeds.';
COMMENT ON COLUMN sources.schedule_reason IS 'Why crawl_interval has its value (publishing rate, back-off, the source''s ttl/max-age/Retry-After).';
COMMENT ON COLUMN sources.next_crawl_at IS 'When the dispatcher next starts a scheduled crawl; the schedule lives here, not in Celery beat.';
COMMENT ON COLUMN sources.etag IS 'ETag of the last successful fetch of url, sent back as If-None-Match.';
COMMENT ON COLUMN sources.last_modified IS 'Last-Modified of the last successful fetch of url, sent back as If-Modified-Since.';
COMMENT ON COLUMN sources.body_sha256 IS 'SHA-256 (hex) of the last body fetched from url: an unchanged body counts as not modified even when the server ignores validators.';
COMMENT ON COLUMN sources.consecutive_failures IS 'Crawls in a row that failed to read the source; 0 after a success.';
COMMENT ON COLUMN sources.host_delay IS 'Minimum seconds between two requests to this source''s hosts, fleet-wide; NULL: NEWSAGG_HOST_DELAY. robots.txt Crawl-delay raises it.';
COMMENT ON COLUMN sources.host_concurrency IS 'Requests in flight at once to this source''s hosts, fleet-wide; NULL: NEWSAGG_HOST_CONCURRENCY.';
COMMENT ON COLUMN sources.created_at IS 'When the source was added.';
COMMENT ON COLUMN sources.updated_at IS 'When the source row last changed (configuration or crawl state).';

-- ---------------------------------------------------------------------------------------
-- crawls: one row per crawl run
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS crawls (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id       bigint      NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    trigger         text        NOT NULL CHECK (trigger IN ('schedule', 'manual', 'backfill')),
    status          text        NOT NULL DEFAULT 'queued'
                                CHECK (status IN ('queued', 'running', 'finished', 'failed', 'abandoned')),
    queued_at       timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    urls_found      integer     NOT NULL DEFAULT 0,
    urls_new        integer     NOT NULL DEFAULT 0,
    urls_queued     integer     NOT NULL DEFAULT 0,
    urls_done       integer     NOT NULL DEFAULT 0,
    articles_stored integer     NOT NULL DEFAULT 0,
    duplicates      integer     NOT NULL DEFAULT 0,
    updated         integer     NOT NULL DEFAULT 0,
    unchanged       integer     NOT NULL DEFAULT 0,
    failures        integer     NOT NULL DEFAULT 0,
    error           text,
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    due_at          timestamptz,
    backfill_since  timestamptz,
    redispatches    integer     NOT NULL DEFAULT 0
);

-- The database, not the scheduler, guarantees that a source has at most one crawl in flight:
-- a second beat, a manual crawl or a redelivered message cannot start a parallel one.
CREATE UNIQUE INDEX IF NOT EXISTS crawls_one_active_per_source
    ON crawls (source_id) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS crawls_source_queued ON crawls (source_id, queued_at DESC);
-- A scheduled crawl is claimed for one due time of its source, once: two dispatchers (two
-- beats by mistake, a restart) cannot both start a crawl for the same due time.
CREATE UNIQUE INDEX IF NOT EXISTS crawls_one_per_due_time
    ON crawls (source_id, due_at) WHERE trigger = 'schedule';

COMMENT ON TABLE crawls IS 'One row per crawl run, scheduled or manual. A crawl is finished when every article URL it queued has been processed (stored or failed).';
COMMENT ON COLUMN crawls.id IS 'Surrogate key.';
COMMENT ON COLUMN crawls.source_id IS 'The source crawled.';
COMMENT ON COLUMN crawls.trigger IS 'Why it ran: schedule (dispatcher), manual (newsagg crawl) or backfill.';
COMMENT ON COLUMN crawls.status IS 'queued (waiting for a worker), running, finished, failed (the source itself could not be read; see error) or abandoned (its work was lost and re-dispatching it did not help; closed by housekeeping).';
COMMENT ON COLUMN crawls.queued_at IS 'When the crawl was requested.';
COMMENT ON COLUMN crawls.started_at IS 'When a worker started reading the source.';
COMMENT ON COLUMN crawls.finished_at IS 'When the last queued URL was processed, or the crawl failed or was abandoned.';
COMMENT ON COLUMN crawls.urls_found IS 'Article URLs the source listed (after canonicalisation and de-duplication within the listing).';
COMMENT ON COLUMN crawls.urls_new IS 'Of those, URLs never seen before.';
COMMENT ON COLUMN crawls.urls_queued IS 'URLs handed to article processing: the new ones plus earlier failures being retried.';
COMMENT ON COLUMN crawls.urls_done IS 'Queued URLs processed so far (any outcome); the crawl finishes when this reaches urls_queued.';
COMMENT ON COLUMN crawls.articles_stored IS 'New original articles stored.';
COMMENT ON COLUMN crawls.duplicates IS 'New articles stored as duplicates of an earlier article (same text at another URL).';
COMMENT ON COLUMN crawls.updated IS 'Already-stored articles whose text changed (a revision was kept).';
COMMENT ON COLUMN crawls.unchanged IS 'URLs that led to an article already stored with the same text (URL variants, redirects, rel=canonical).';
COMMENT ON COLUMN crawls.failures IS 'Queued URLs that failed for good; each has a fetches row saying why.';
COMMENT ON COLUMN crawls.last_activity_at IS 'Last time a worker did something for this crawl. The crawl''s lease: a queued or running crawl idle for longer than NEWSAGG_CRAWL_LEASE has lost its messages or its worker, and housekeeping sends its work again.';
COMMENT ON COLUMN crawls.due_at IS 'For scheduled crawls, the sources.next_crawl_at value the dispatcher claimed (unique per source).';
COMMENT ON COLUMN crawls.backfill_since IS 'For backfills, the date the sitemap walk stops at (NULL: no limit but the URL cap).';
COMMENT ON COLUMN crawls.redispatches IS 'Times housekeeping found the crawl idle past its lease and sent its lost work again (the source read, or the URLs still pending); after NEWSAGG_MAX_REDISPATCHES the crawl is abandoned.';
COMMENT ON COLUMN crawls.error IS 'Why the crawl failed, when status = failed or abandoned.';

-- ---------------------------------------------------------------------------------------
-- stories: related articles about one event
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS stories (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title           text        NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE stories IS 'A group of articles about the same event (the "related articles" an aggregator shows). Duplicates share their original''s story.';
COMMENT ON COLUMN stories.id IS 'Surrogate key.';
COMMENT ON COLUMN stories.title IS 'Representative title: the title of the story''s first article (its canonical URL when it had none).';
COMMENT ON COLUMN stories.first_seen_at IS 'When the story''s first article was stored.';
COMMENT ON COLUMN stories.last_seen_at IS 'When an article last joined the story.';

-- ---------------------------------------------------------------------------------------
-- articles: one row per canonical URL
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS articles (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id       bigint      REFERENCES sources (id) ON DELETE SET NULL,
    url             text        NOT NULL,
    canonical_url   text        NOT NULL UNIQUE,
    title           text,
    author          text,
    published_at    timestamptz,
    language        text,
    sitename        text,
    description     text,
    tags            text[]      NOT NULL DEFAULT '{}',
    image_url       text,
    text            text        NOT NULL,
    word_count      integer     NOT NULL DEFAULT 0,
    content_hash    text        NOT NULL,
    duplicate_of    bigint      REFERENCES articles (id) ON DELETE SET NULL,
    story_id        bigint      REFERENCES stories (id) ON DELETE SET NULL,
    revision        integer     NOT NULL DEFAULT 0,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    fetched_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT articles_not_own_duplicate CHECK (duplicate_of IS DISTINCT FROM id)
);

CREATE INDEX IF NOT EXISTS articles_content_hash ON articles (content_hash);
CREATE INDEX IF NOT EXISTS articles_published_at ON articles (published_at DESC NULLS LAST);
CREATE INDEX IF NOT EXISTS articles_first_seen_at ON articles (first_seen_at DESC);
CREATE INDEX IF NOT EXISTS articles_source_first_seen ON articles (source_id, first_seen_at DESC);
CREATE INDEX IF NOT EXISTS articles_story ON articles (story_id);
CREATE INDEX IF NOT EXISTS articles_duplicate_of ON articles (duplicate_of) WHERE duplicate_of IS NOT NULL;

COMMENT ON TABLE articles IS 'One row per article, keyed by canonical URL. Duplicates (same text at another URL) are rows of their own with duplicate_of set.';
COMMENT ON COLUMN articles.id IS 'Surrogate key; also the payload of NOTIFY articles.';
COMMENT ON COLUMN articles.source_id IS 'The source whose crawl first found the article (NULL if that source was removed).';
COMMENT ON COLUMN articles.url IS 'The URL the article was last fetched from, after redirects.';
COMMENT ON COLUMN articles.canonical_url IS 'Canonical URL: the page''s rel=canonical when it is on the same site, else the final URL; tracking parameters (utm_*, fbclid, gclid, …) and fragments removed, host lower-cased. Unique.';
COMMENT ON COLUMN articles.title IS 'Headline without the site-name suffix (" | CBC News"); from the page, else from the feed.';
COMMENT ON COLUMN articles.author IS 'Author(s) as the page (else the feed) names them; several are separated by "; ".';
COMMENT ON COLUMN articles.published_at IS 'Publication time: the feed''s timestamp when it falls on the day the page states (pages often give only a day), else the page''s date (midnight UTC when only a day is known), else the feed''s.';
COMMENT ON COLUMN articles.language IS 'ISO 639-1 code: the page''s declared language, else detected from the text.';
COMMENT ON COLUMN articles.sitename IS 'Name of the publication, from the page metadata.';
COMMENT ON COLUMN articles.description IS 'Summary from the page metadata (og:description / meta description).';
COMMENT ON COLUMN articles.tags IS 'Tags and categories from the page metadata.';
COMMENT ON COLUMN articles.image_url IS 'Lead image (og:image) URL.';
COMMENT ON COLUMN articles.text IS 'Main text, extracted by trafilatura without comments or page chrome; paragraphs separated by newlines.';
COMMENT ON COLUMN articles.word_count IS 'Number of words in text.';
COMMENT ON COLUMN articles.content_hash IS 'SHA-256 (hex) of the normalised text (case-folded, whitespace collapsed): equal hashes mean the same text.';
COMMENT ON COLUMN articles.duplicate_of IS 'The original (earliest stored) article with the same or nearly the same text: a syndicated copy with other page chrome, an edited headline, a dateline, byline or update paragraph added, a trimmed end or a few words changed. Always an original (never a duplicate itself); NULL for originals.';
COMMENT ON COLUMN articles.story_id IS 'The story this article belongs to: different articles about the same event (matched on headline and lead terms within the story window) share it; duplicates share their original''s story.';
COMMENT ON COLUMN articles.revision IS 'How many times the text changed after the first fetch (previous versions are in article_revisions).';
COMMENT ON COLUMN articles.first_seen_at IS 'When the article was first stored.';
COMMENT ON COLUMN articles.fetched_at IS 'When the article was last fetched.';
COMMENT ON COLUMN articles.updated_at IS 'When the stored text or metadata last changed.';

-- Near-duplicate and story matching (issue 3). Added as columns so that re-applying the
-- file upgrades a database created before them.
ALTER TABLE articles ADD COLUMN IF NOT EXISTS duplicate_kind text
    CHECK (duplicate_kind IN ('exact', 'near'));
ALTER TABLE articles ADD COLUMN IF NOT EXISTS duplicate_similarity real;
ALTER TABLE articles ADD COLUMN IF NOT EXISTS story_terms text[] NOT NULL DEFAULT '{}';
ALTER TABLE articles ADD COLUMN IF NOT EXISTS event_at timestamptz;

COMMENT ON COLUMN articles.duplicate_kind IS 'How duplicate_of was found: exact (same normalised text) or near (a near-duplicate: MinHash LSH candidate verified on the exact word-shingle sets); NULL for originals.';
COMMENT ON COLUMN articles.duplicate_similarity IS 'Jaccard similarity of the word 5-gram shingle sets of this text and the text it was matched with (1 for exact copies); NULL for originals.';
COMMENT ON COLUMN articles.story_terms IS 'The salient terms (truncated words) of the headline and lead that story matching compares; empty for duplicates, which take their original''s story.';
COMMENT ON COLUMN articles.event_at IS 'The time duplicate and story matching place the article at: published_at when known and not in the future, else first_seen_at. Only articles within the story window (NEWSAGG_STORY_WINDOW_DAYS) of each other are compared.';

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

-- One row per (LSH band key, article): the indexed look-up that finds near-duplicate
-- candidates without reading other articles. event_at is copied here so the look-up is one
-- index range scan per key, restricted to the window, whatever the size of the table.
CREATE TABLE IF NOT EXISTS article_bands (
    band_key        bigint      NOT NULL,
    event_at        timestamptz NOT NULL,
    article_id      bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    PRIMARY KEY (band_key, event_at, article_id)
);
CREATE INDEX IF NOT EXISTS article_bands_article ON article_bands (article_id);

COMMENT ON TABLE article_bands IS 'MinHash LSH band keys of each article text (42 per article of at least NEWSAGG_NEAR_DUP_MIN_WORDS words): articles sharing a key are near-duplicate candidates, verified on their texts before linking.';
COMMENT ON COLUMN article_bands.band_key IS 'Signed 64-bit hash of (signature version, band number, the band''s 3 MinHash values); see workers/dedup.py.';
COMMENT ON COLUMN article_bands.event_at IS 'The article''s event_at, so look-ups read only the window.';
COMMENT ON COLUMN article_bands.article_id IS 'The article.';

-- One row per (story term, original article): the indexed look-up behind story matching.
CREATE TABLE IF NOT EXISTS article_terms (
    term            text        NOT NULL,
    event_at        timestamptz NOT NULL,
    article_id      bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    story_id        bigint      NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    PRIMARY KEY (term, event_at, article_id)
);
CREATE INDEX IF NOT EXISTS article_terms_article ON article_terms (article_id);

COMMENT ON TABLE article_terms IS 'Story terms of each original article (see articles.story_terms): story matching finds articles of the window sharing a term through this table.';
COMMENT ON COLUMN article_terms.term IS 'One of the article''s story_terms.';
COMMENT ON COLUMN article_terms.event_at IS 'The article''s event_at, so look-ups read only the window.';
COMMENT ON COLUMN article_terms.article_id IS 'The article.';
COMMENT ON COLUMN article_terms.story_id IS 'The article''s story (copied so a look-up needs no join).';

CREATE TABLE IF NOT EXISTS article_revisions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    article_id      bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    revision        integer     NOT NULL,
    title           text,
    text            text        NOT NULL,
    content_hash    text        NOT NULL,
    fetched_at      timestamptz NOT NULL,
    replaced_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (article_id, revision)
);

COMMENT ON TABLE article_revisions IS 'Earlier versions of an article''s text, kept when a re-fetch found the text changed.';
COMMENT ON COLUMN article_revisions.id IS 'Surrogate key.';
COMMENT ON COLUMN article_revisions.article_id IS 'The article.';
COMMENT ON COLUMN article_revisions.revision IS 'The article''s revision number while this version was current (0 = first version).';
COMMENT ON COLUMN article_revisions.title IS 'Title of that version.';
COMMENT ON COLUMN article_revisions.text IS 'Text of that version.';
COMMENT ON COLUMN article_revisions.content_hash IS 'content_hash of that version.';
COMMENT ON COLUMN article_revisions.fetched_at IS 'When that version was fetched.';
COMMENT ON COLUMN article_revisions.replaced_at IS 'When a newer version replaced it.';

-- Article texts and search vectors are TOASTed: lz4 compresses them several times faster
-- than the default pglz at the same size (0.1-0.2 ms of PostgreSQL's CPU per stored page,
-- README "Performance"). Only servers built with lz4 (PostgreSQL 14+) offer it; elsewhere the
-- default stays. Values stored before keep their compression.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
                WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE articles ALTER COLUMN text SET COMPRESSION lz4,
                             ALTER COLUMN search SET COMPRESSION lz4;
        ALTER TABLE article_revisions ALTER COLUMN text SET COMPRESSION lz4;
    END IF;
END;
$$;

-- ---------------------------------------------------------------------------------------
-- discovered_urls: the crawl frontier (every article URL ever listed by a source)
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS discovered_urls (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text        NOT NULL UNIQUE,
    source_id       bigint      REFERENCES sources (id) ON DELETE CASCADE,
    crawl_id        bigint      REFERENCES crawls (id) ON DELETE SET NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_status     text,
    retryable       boolean     NOT NULL DEFAULT false,
    feed_title      text,
    feed_published_at timestamptz,
    feed_author     text,
    article_id      bigint      REFERENCES articles (id) ON DELETE SET NULL,
    discovered_at   timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    claims          integer     NOT NULL DEFAULT 0,
    claimed_at      timestamptz,
    claimed_by      text
);

CREATE INDEX IF NOT EXISTS discovered_urls_crawl ON discovered_urls (crawl_id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS discovered_urls_source_pending ON discovered_urls (source_id)
    WHERE state = 'pending';
-- The publishing rate of a source (new URLs in the last week) drives its polling interval.
CREATE INDEX IF NOT EXISTS discovered_urls_source_time ON discovered_urls (source_id, discovered_at);
-- Housekeeping looks for URLs whose worker was lost mid-task.
CREATE INDEX IF NOT EXISTS discovered_urls_claimed ON discovered_urls (claimed_at)
    WHERE state = 'pending' AND claimed_at IS NOT NULL;

COMMENT ON TABLE discovered_urls IS 'Every article URL a source listed, canonicalised, with its processing state: the crawl frontier. A URL is fetched once unless it failed for a reason worth retrying.';
COMMENT ON COLUMN discovered_urls.id IS 'Surrogate key; the id carried by the article-processing task.';
COMMENT ON COLUMN discovered_urls.url IS 'Canonicalised URL as listed by the source (before redirects and rel=canonical).';
COMMENT ON COLUMN discovered_urls.source_id IS 'The source that listed it first.';
COMMENT ON COLUMN discovered_urls.crawl_id IS 'The crawl that last queued it for processing.';
COMMENT ON COLUMN discovered_urls.state IS 'pending (queued, not processed yet), done (led to an article) or failed (see last_status and fetches).';
COMMENT ON COLUMN discovered_urls.attempts IS 'Times processing finished for this URL (successes and failures).';
COMMENT ON COLUMN discovered_urls.last_status IS 'Fetch status of the last attempt (the vocabulary of fetches.status).';
COMMENT ON COLUMN discovered_urls.retryable IS 'True when the last failure was transient (timeout, connection error, HTTP 5xx or 429): a later crawl that lists the URL again retries it.';
COMMENT ON COLUMN discovered_urls.feed_title IS 'Title given by the feed or sitemap: the fallback when extraction finds none.';
COMMENT ON COLUMN discovered_urls.feed_published_at IS 'Publication time given by the feed or sitemap.';
COMMENT ON COLUMN discovered_urls.feed_author IS 'Author given by the feed.';
COMMENT ON COLUMN discovered_urls.article_id IS 'The article the URL led to (after redirects and rel=canonical).';
COMMENT ON COLUMN discovered_urls.discovered_at IS 'When a source first listed the URL.';
COMMENT ON COLUMN discovered_urls.processed_at IS 'When processing last finished.';
COMMENT ON COLUMN discovered_urls.claims IS 'Times a worker started processing this URL and neither finished nor handed it back: each is a worker lost mid-task (killed, out of memory, past the hard time limit). At NEWSAGG_MAX_CLAIMS the URL fails as worker_lost instead of being retried forever.';
COMMENT ON COLUMN discovered_urls.claimed_at IS 'When the worker processing it now started (NULL when no worker holds it). A URL claimed longer ago than NEWSAGG_CRAWL_LEASE lost its worker: housekeeping sends it again.';
COMMENT ON COLUMN discovered_urls.claimed_by IS 'The worker process holding it, as host:pid:attempt (kept after it lets go, for the record).';

-- ---------------------------------------------------------------------------------------
-- fetches: every HTTP fetch and its outcome
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS fetches (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    crawl_id        bigint      REFERENCES crawls (id) ON DELETE SET NULL,
    source_id       bigint      REFERENCES sources (id) ON DELETE CASCADE,
    purpose         text        NOT NULL CHECK (purpose IN ('source', 'article')),
    url             text        NOT NULL,
    final_url       text,
    status          text        NOT NULL,
    http_status     integer,
    error           text,
    content_type    text,
    bytes           integer,
    elapsed_ms      integer,
    article_id      bigint      REFERENCES articles (id) ON DELETE SET NULL,
    fetched_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS fetches_crawl ON fetches (crawl_id);
CREATE INDEX IF NOT EXISTS fetches_source_time ON fetches (source_id, fetched_at DESC);
CREATE INDEX IF NOT EXISTS fetches_failures ON fetches (fetched_at DESC) WHERE status NOT IN ('ok', 'not_modified');

COMMENT ON TABLE fetches IS 'Every fetch attempt and its outcome, failures included: which URL, what happened, why.';
COMMENT ON COLUMN fetches.id IS 'Surrogate key.';
COMMENT ON COLUMN fetches.crawl_id IS 'The crawl the fetch belonged to.';
COMMENT ON COLUMN fetches.source_id IS 'The source the fetch belonged to.';
COMMENT ON COLUMN fetches.purpose IS 'source (the feed, sitemap or listing page itself, or a child sitemap) or article.';
COMMENT ON COLUMN fetches.url IS 'URL requested.';
COMMENT ON COLUMN fetches.final_url IS 'URL after redirects (NULL when no response was received).';
COMMENT ON COLUMN fetches.status IS 'Outcome: ok, not_modified, http_error, timeout, connect_error, protocol_error, too_large, unsupported_content, too_many_redirects, blocked_address, invalid_url, robots_denied, host_backoff, empty_extraction, too_complex, parse_error, worker_error, worker_lost (see README, "What fetches.status means").';
COMMENT ON COLUMN fetches.http_status IS 'HTTP status code of the last response, when there was one.';
COMMENT ON COLUMN fetches.error IS 'Human-readable explanation (NULL when status = ok).';
COMMENT ON COLUMN fetches.content_type IS 'Content-Type of the response.';
COMMENT ON COLUMN fetches.bytes IS 'Body bytes read (after content decoding).';
COMMENT ON COLUMN fetches.elapsed_ms IS 'Time taken by the fetch, redirects included.';
COMMENT ON COLUMN fetches.article_id IS 'The article stored or updated from this fetch.';
COMMENT ON COLUMN fetches.fetched_at IS 'When the fetch finished.';

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

-- ---------------------------------------------------------------------------------------
-- Views for common questions
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE VIEW unique_articles AS
SELECT a.id, a.title, a.canonical_url, s.name AS source, a.sitename, a.author, a.published_at,
       a.language, a.description, a.image_url, a.story_id, a.first_seen_at, a.text
  FROM articles a
  LEFT JOIN sources s ON s.id = a.source_id
 WHERE a.duplicate_of IS NULL
 ORDER BY coalesce(a.published_at, a.first_seen_at) DESC;
COMMENT ON VIEW unique_articles IS 'Original articles (duplicates left out), newest first by publication time (first-seen time when unknown).';

DROP VIEW IF EXISTS source_status;
CREATE VIEW source_status AS
SELECT s.id, s.name, s.kind, s.url, s.enabled, s.healthy, s.crawl_interval, s.schedule_reason,
       s.next_crawl_at, s.consecutive_failures,
       lc.id AS last_crawl_id, lc.trigger AS last_crawl_trigger, lc.status AS last_crawl_status,
       lc.queued_at AS last_crawl_at, lc.finished_at AS last_crawl_finished_at,
       lc.articles_stored AS last_crawl_stored, lc.failures AS last_crawl_failures,
       lc.error AS last_crawl_error,
       (SELECT count(*) FROM articles a WHERE a.source_id = s.id) AS articles,
       (SELECT count(*) FROM articles a WHERE a.source_id = s.id
                                           AND a.first_seen_at > now() - interval '24 hours') AS articles_24h,
       (SELECT count(DISTINCT f.url) FROM fetches f
         WHERE f.source_id = s.id AND f.status NOT IN ('ok', 'not_modified')
           AND f.fetched_at > now() - interval '24 hours') AS failures_24h
  FROM sources s
  -- Named columns, not *: a view stores the column list it was made with.
  LEFT JOIN LATERAL (SELECT c.id, c.trigger, c.status, c.queued_at, c.finished_at,
                            c.articles_stored, c.failures, c.error
                       FROM crawls c WHERE c.source_id = s.id
                      ORDER BY c.queued_at DESC, c.id DESC LIMIT 1) lc ON true;
COMMENT ON VIEW source_status IS 'Per source: health, schedule (interval, why, next crawl), last crawl and its result, articles stored (in all and in the last 24 h) and URLs whose fetch failed in the last 24 h.';

CREATE OR REPLACE VIEW crawl_history AS
SELECT c.id, s.name AS source, c.trigger, c.status, c.queued_at, c.started_at, c.finished_at,
       c.finished_at - c.started_at AS duration,
       c.urls_found, c.urls_new, c.urls_queued, c.urls_done, c.articles_stored, c.duplicates,
       c.updated, c.unchanged, c.failures, c.error
  FROM crawls c
  JOIN sources s ON s.id = c.source_id
 ORDER BY c.queued_at DESC, c.id DESC;
COMMENT ON VIEW crawl_history IS 'Crawl runs, newest first, with their source name and counts.';

CREATE OR REPLACE VIEW story_articles AS
SELECT st.id AS story_id, st.title AS story_title, st.first_seen_at AS story_first_seen_at,
       st.last_seen_at AS story_last_seen_at, a.id AS article_id, a.title, a.canonical_url,
       s.name AS source, a.sitename, a.published_at, a.duplicate_of, a.duplicate_kind
  FROM stories st
  JOIN articles a ON a.story_id = st.id
  LEFT JOIN sources s ON s.id = a.source_id;
COMMENT ON VIEW story_articles IS 'Each story with its articles and their sources (duplicates included; filter duplicate_of IS NULL for one row per report). Filter by story_id: it uses articles_story.';

-- ---------------------------------------------------------------------------------------
-- Schema version: the migrations (migrations/NNNN_*.sql) this file already contains. A
-- database made from this file needs none of them; an older one gets the missing ones
-- from `newsagg db init`.
-- ---------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS schema_migrations (
    version         integer     PRIMARY KEY,
    name            text        NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE schema_migrations IS 'Migrations applied to this database (internal to newsagg).';
COMMENT ON COLUMN schema_migrations.version IS 'The migration''s number (migrations/NNNN_name.sql).';
COMMENT ON COLUMN schema_migrations.name IS 'The migration''s name.';
COMMENT ON COLUMN schema_migrations.applied_at IS 'When it was applied (or the database created with it).';
INSERT INTO schema_migrations (version, name)
VALUES (1, 'initial'), (2, 'consumer_api'), (3, 'operations'), (4, 'band_comments'),
       (5, 'lz4_toast')
ON CONFLICT (version) DO NOTHING;

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
