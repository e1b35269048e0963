-- dbsync._verify_counts(p_verification_id bigint, p_rows_compared bigint, p_chunks int, p_chunks_differing int, p_rows_missing bigint, p_rows_extra bigint, p_rows_different bigint, p_differing_keys text[], p_rows_repaired bigint) returns void
--   A running verification's counts so far (the sidecar sends them a few times a
--   second at most); differing_count is their sum.
--   Parameters: p_verification_id; the counts; p_differing_keys, the first keys that differ
--     (the sidecar caps them).
--   Returns: nothing.
--   Calls: nothing. Tables touched: dbsync.verifications (the count columns).
--   SECURITY INVOKER: the sidecar role may write these columns itself
--   (dbsync.grant_sidecar); a role that may not gets a permission error.
create or replace function dbsync._verify_counts(p_verification_id bigint, p_rows_compared bigint, p_chunks int,
                                                 p_chunks_differing int, p_rows_missing bigint, p_rows_extra bigint,
                                                 p_rows_different bigint, p_differing_keys text[],
                                                 p_rows_repaired bigint) returns void
language sql set search_path = pg_catalog, pg_temp as $$
    update dbsync.verifications
    set rows_compared = p_rows_compared, chunks = p_chunks, chunks_differing = p_chunks_differing,
        rows_missing = p_rows_missing, rows_extra = p_rows_extra, rows_different = p_rows_different,
        differing_count = p_rows_missing + p_rows_extra + p_rows_different,
        differing_keys = p_differing_keys, rows_repaired = p_rows_repaired
    where verification_id = p_verification_id;
$$;
