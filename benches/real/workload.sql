-- bench-real: sqlite3's allocation-heavy shapes in one script (run on an
-- in-memory database): rows built from a recursive CTE, an index built and
-- dropped, grouping, sorting, string building, updates and deletes that free
-- and reuse pages. The output is a few aggregate lines, compared between
-- allocators.
PRAGMA cache_size = -65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, city TEXT, score INTEGER, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000)
INSERT INTO t(city, score, note)
SELECT
  char(97 + (i * 7) % 26, 97 + (i * 11) % 26, 97 + (i * 13) % 26),
  (i * 2654435761) % 100003,
  printf('%.*c', 8 + (i * 31) % 120, 'x')
FROM n;
CREATE INDEX t_city_score ON t(city, score);
SELECT count(*), sum(score) FROM t WHERE city BETWEEN 'd' AND 'm';
SELECT city, count(*), max(length(note)) FROM t GROUP BY city ORDER BY 2 DESC, 1 LIMIT 3;
SELECT sum(length(g)) FROM (SELECT group_concat(note, ',') AS g FROM t GROUP BY score % 997);
UPDATE t SET note = note || note WHERE score % 3 = 0;
DELETE FROM t WHERE score % 5 = 0;
DROP INDEX t_city_score;
CREATE INDEX t_note ON t(note);
SELECT count(*), sum(length(note)) FROM t;
SELECT id FROM t ORDER BY note DESC, id LIMIT 1;
VACUUM;
SELECT count(*) FROM t;
