-- v17: results-sharing query answers kept locally (seed 001 检验7: "当本地已存在就诊患者历史检验
-- 数据时则直接查询本地数据"): a query with cache_seconds is answered from here until it expires,
-- also after a restart. Expired rows are deleted whenever the table is looked at.
CREATE TABLE rs_query_cache (
    uplink      TEXT NOT NULL,
    query       TEXT NOT NULL,   -- the query's name (labs, item_codes, institutions...)
    params_hash TEXT NOT NULL,   -- SHA-256 of the parameters as sorted JSON: a fixed-width key
    data        TEXT NOT NULL,   -- the platform's data, JSON
    fetched_at  REAL NOT NULL,   -- unix seconds
    expires_at  REAL NOT NULL,   -- unix seconds
    PRIMARY KEY (uplink, query, params_hash)
);
CREATE INDEX rs_query_cache_expiry ON rs_query_cache (expires_at);
