-- 0003: surviving faults (issue 9). A URL counts the workers it lost (claims), so a page that
-- kills its worker every time fails as worker_lost instead of looping; a crawl counts how often
-- housekeeping re-dispatched its lost work before giving it up. Applied by `newsagg db init`
-- to databases made from 0002; a fresh database gets all of this from schema.sql.

ALTER TABLE discovered_urls ADD COLUMN IF NOT EXISTS claims integer NOT NULL DEFAULT 0;
ALTER TABLE discovered_urls ADD COLUMN IF NOT EXISTS claimed_at timestamptz;
ALTER TABLE discovered_urls ADD COLUMN IF NOT EXISTS claimed_by text;
CREATE INDEX IF NOT EXISTS discovered_urls_claimed ON discovered_urls (claimed_at)
    WHERE state = 'pending' AND claimed_at IS NOT NULL;
COMMENT ON COLUMN discovered_urls.claims IS 'Times a worker started processing this URL and neither finished nor handed it back: each is a worker lost mid-task (killed, out of memory, past the hard time limit). At NEWSAGG_MAX_CLAIMS the URL fails as worker_lost instead of being retried forever.';
COMMENT ON COLUMN discovered_urls.claimed_at IS 'When the worker processing it now started (NULL when no worker holds it). A URL claimed longer ago than NEWSAGG_CRAWL_LEASE lost its worker: housekeeping sends it again.';
COMMENT ON COLUMN discovered_urls.claimed_by IS 'The worker process holding it, as host:pid:attempt (kept after it lets go, for the record).';

ALTER TABLE crawls ADD COLUMN IF NOT EXISTS redispatches integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN crawls.redispatches IS 'Times housekeeping found the crawl idle past its lease and sent its lost work again (the source read, or the URLs still pending); after NEWSAGG_MAX_REDISPATCHES the crawl is abandoned.';
COMMENT ON COLUMN crawls.status IS 'queued (waiting for a worker), running, finished, failed (the source itself could not be read; see error) or abandoned (its work was lost and re-dispatching it did not help; closed by housekeeping).';
COMMENT ON COLUMN crawls.last_activity_at IS 'Last time a worker did something for this crawl. The crawl''s lease: a queued or running crawl idle for longer than NEWSAGG_CRAWL_LEASE has lost its messages or its worker, and housekeeping sends its work again.';
COMMENT ON COLUMN fetches.status IS 'Outcome: ok, not_modified, http_error, timeout, connect_error, protocol_error, too_large, unsupported_content, too_many_redirects, blocked_address, invalid_url, robots_denied, host_backoff, empty_extraction, too_complex, parse_error, worker_error, worker_lost (see README, "What fetches.status means").';

-- source_status selected crawls.* in 0001, which froze the crawl columns of that day into
-- the view; it names its columns now.
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
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'newsagg_reader') THEN
        GRANT SELECT ON source_status TO newsagg_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'newsagg_writer') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO newsagg_writer;
    END IF;
END;
$$;
