-- 0005: article texts and search vectors compressed with lz4 rather than pglz, where the
-- server has it (see schema.sql). Catalog only: no table is rewritten, and values stored
-- before keep pglz. Applied by `newsagg db init` to databases made from 0004; a fresh
-- database gets this from schema.sql.

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
