-- 0005: article texts and search vectors compressed with lz4 rather than pglz, where the
-- server has it (see schema.sql). Catalog only: no table is rewritten, and values stored
-- before keep pglz. Applied by `newsagg db init` to databases made from 0004; a fresh
-- database gets this from schema.sql.

-- A catalog change, but under an ACCESS EXCLUSIVE lock: rather than queue behind a long
-- reader of articles (and hold up every worker and reader behind it), fail and say so.
SET LOCAL lock_timeout = '10s';

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
