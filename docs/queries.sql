-- Documented consumer queries (README, "Querying"). tests/test_query_plans.py runs each one
-- with EXPLAIN ANALYZE on 1,000,000 generated articles and checks it uses an index and
-- takes under 50 ms. Parameters are psql-style :'name' variables.

-- name: latest_unique
-- The newest original articles with their outlet (the front page).
SELECT id, title, source, sitename, published_at, canonical_url
  FROM unique_articles
 LIMIT 20;

-- name: story
-- A story with its articles and sources (the "related articles" box).
SELECT article_id, title, source, sitename, published_at, canonical_url
  FROM story_articles
 WHERE story_id = :'story_id' AND duplicate_of IS NULL
 ORDER BY published_at DESC;

-- name: copies
-- All copies of an article (given the original or any copy): the original first.
SELECT a.id, a.canonical_url, a.sitename, a.duplicate_kind, a.duplicate_similarity
  FROM (SELECT coalesce(duplicate_of, id) AS root FROM articles WHERE id = :'article_id') r
  JOIN articles a ON a.id = r.root OR a.duplicate_of = r.root
 ORDER BY a.duplicate_of NULLS FIRST, a.first_seen_at;

-- name: related
-- "Related articles" for an article page: the other originals of its story.
SELECT a.id, a.title, a.sitename, a.published_at, a.canonical_url
  FROM articles a
 WHERE a.story_id = (SELECT story_id FROM articles WHERE id = :'article_id')
   AND a.duplicate_of IS NULL
   AND a.id <> (SELECT coalesce(duplicate_of, id) FROM articles WHERE id = :'article_id')
 ORDER BY a.published_at DESC NULLS LAST;

-- name: search
-- Full-text search over originals, title matches first.
SELECT a.id, a.title, a.published_at, ts_rank(a.search, q) AS rank
  FROM articles a, websearch_to_tsquery(newsagg_ts_config('en'), :'query') AS q
 WHERE a.search @@ q AND a.duplicate_of IS NULL
 ORDER BY rank DESC
 LIMIT 20;

-- name: since
-- Polling without LISTEN: what arrived after the last id you saw.
SELECT id, title, canonical_url, duplicate_of
  FROM articles
 WHERE id > :'last_id'
 ORDER BY id
 LIMIT 100;

-- name: source_latest
-- The latest articles of one source.
SELECT id, title, published_at
  FROM articles
 WHERE source_id = :'source_id'
 ORDER BY first_seen_at DESC
 LIMIT 20;

-- name: revisions
-- How an article's text changed.
SELECT revision, title, content_hash, fetched_at, replaced_at
  FROM article_revisions
 WHERE article_id = :'article_id'
 ORDER BY revision;
