-- 0004: the comments on article_bands described the LSH layout of issue 3's first draft (32
-- bands of 4 values); workers/dedup.py has used 42 bands of 3 since it was measured (its
-- docstring says why). Comments only: no data changes. Applied by `newsagg db init` to
-- databases made from 0003; a fresh database gets this from schema.sql.

COMMENT ON TABLE article_bands IS 'MinHash LSH band keys of each article text (42 per article of at least NEWSAGG_NEAR_DUP_MIN_WORDS words): articles sharing a key are near-duplicate candidates, verified on their texts before linking.';
COMMENT ON COLUMN article_bands.band_key IS 'Signed 64-bit hash of (signature version, band number, the band''s 3 MinHash values); see workers/dedup.py.';
