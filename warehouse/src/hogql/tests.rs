//! Unit tests: translation and every rejection (message and position).

use super::*;

fn ctx() -> Context {
    Context { team_id: 7, ..Context::default() }
}

fn legacy() -> Context {
    Context { team_id: 7, dialect: Dialect::Legacy, ..Context::default() }
}

fn sql(q: &str) -> String {
    translate(q, &ctx()).unwrap_or_else(|e| panic!("{q}: {e}"))
}

const EV: &str = "(SELECT * FROM events FINAL WHERE team_id = 7)";
const SUFFIX: &str = "SETTINGS max_execution_time = 30";

fn prop(col: &str, key: &str) -> String {
    format!("replaceRegexpAll(nullIf(nullIf(JSONExtractRaw({col}, '{key}'), ''), 'null'), '^\"|\"$', '')")
}

#[test]
fn a_simple_query_reads_only_the_team() {
    assert_eq!(
        sql("SELECT event, count() FROM events GROUP BY event"),
        format!("SELECT event, count() FROM {EV} AS events GROUP BY event LIMIT 100 {SUFFIX}")
    );
}

#[test]
fn table_names_are_case_insensitive_and_printed_canonically() {
    assert_eq!(
        sql("select EVENTS.event from EVENTS"),
        format!("SELECT events.event AS `EVENTS.event` FROM {EV} AS events LIMIT 100 {SUFFIX}")
    );
    assert_eq!(
        sql("SELECT count() FROM Persons"),
        format!(
            "SELECT count() FROM (SELECT * FROM persons FINAL WHERE team_id = 7 AND is_deleted = 0) AS persons \
             LIMIT 100 {SUFFIX}"
        )
    );
    let no_final = Context { final_events: false, ..ctx() };
    assert_eq!(
        translate("SELECT 1 FROM events e", &no_final).unwrap(),
        format!("SELECT 1 FROM (SELECT * FROM events WHERE team_id = 7) AS e LIMIT 100 {SUFFIX}")
    );
}

#[test]
fn properties_are_extracted_like_posthog() {
    let p = prop("properties", "$browser");
    assert_eq!(
        sql("SELECT properties.$browser FROM events"),
        format!("SELECT {p} AS `properties.$browser` FROM {EV} AS events LIMIT 100 {SUFFIX}")
    );
    assert_eq!(
        sql("SELECT e.properties.$browser AS b FROM events AS e WHERE properties['$browser'] = 'x'"),
        format!(
            "SELECT {} AS `b` FROM {EV} AS e WHERE ({p} = 'x') LIMIT 100 {SUFFIX}",
            prop("e.properties", "$browser")
        )
    );
    assert!(
        sql("SELECT properties.$screen.width FROM events").contains("JSONExtractRaw(properties, '$screen', 'width')")
    );
    assert!(sql("SELECT properties.`$current url` FROM events").contains("JSONExtractRaw(properties, '$current url')"));
    assert!(sql("SELECT properties['a']['b'] FROM events").contains("JSONExtractRaw(properties, 'a', 'b')"));
    assert!(sql("SELECT person.properties.email FROM events").contains("JSONExtractRaw(person_properties, 'email')"));
    assert!(
        sql("SELECT e.person.properties.email FROM events e").contains("JSONExtractRaw(e.person_properties, 'email')")
    );
    assert!(
        sql("SELECT person.id, person_id FROM events").starts_with("SELECT person_id AS `person.id`, person_id FROM")
    );
    assert!(sql("SELECT properties.email FROM persons").contains("JSONExtractRaw(properties, 'email')"));
    // Keys are printed as string literals, never spliced.
    let q = sql("SELECT properties.`a'b\\\\c` FROM events");
    assert!(q.contains("JSONExtractRaw(properties, 'a\\'b\\\\c')"), "{q}");
}

#[test]
fn legacy_reads_properties_with_visit_param() {
    let q = translate("SELECT properties.$screen.width FROM events", &legacy()).unwrap();
    assert!(
        q.contains(
            "replaceRegexpAll(nullIf(nullIf(visitParamExtractRaw(visitParamExtractRaw(properties, '$screen'), 'width'), ''), 'null'), '^\"|\"$', '')"
        ),
        "{q}"
    );
    let q = translate("SELECT event ILIKE '%A%', true FROM events", &legacy()).unwrap();
    assert!(q.contains("(lowerUTF8(event) LIKE lowerUTF8('%A%'))"), "{q}");
    assert!(q.contains(", 1 AS `true`"), "{q}");
}

#[test]
fn expressions_print_as_clickhouse_reads_them() {
    let cases = [
        ("1 + 2 * 3 - 4", "(1 + (2 * 3) - 4)"),
        ("-x", "(-x)"),
        ("NOT a AND b OR c", "(((NOT a) AND b) OR c)"),
        ("a NOT LIKE 'x%'", "(a NOT LIKE 'x%')"),
        ("a ILIKE 'x%'", "(a ILIKE 'x%')"),
        ("a IN (1, 2)", "(a IN (1, 2))"),
        ("a NOT IN (SELECT 1)", "(a NOT IN (SELECT 1))"),
        ("a BETWEEN 1 AND 2", "(a BETWEEN 1 AND 2)"),
        ("a NOT BETWEEN 1 AND 2", "(NOT (a BETWEEN 1 AND 2))"),
        ("a IS NOT NULL", "(a IS NOT NULL)"),
        ("CASE WHEN a THEN 'x' ELSE 'y' END", "CASE WHEN a THEN 'x' ELSE 'y' END"),
        ("CASE a WHEN 1 THEN 2 END", "CASE a WHEN 1 THEN 2 END"),
        ("INTERVAL 7 DAY", "toIntervalDay(7)"),
        ("now() - INTERVAL 2 hours", "(now() - toIntervalHour(2))"),
        ("[1, 2][1]", "[1, 2][1]"),
        ("(1, 'a')", "tuple(1, 'a')"),
        ("arrayMap(x -> x * 2, [1])", "arrayMap(x -> (x * 2), [1])"),
        ("arrayMap((x, y) -> x + y, [1], [2])", "arrayMap((x, y) -> (x + y), [1], [2])"),
        ("quantile(0.9)(a)", "quantile(0.9)(a)"),
        ("countIf(a > 1)", "countIf((a > 1))"),
        ("count(DISTINCT a)", "count(DISTINCT a)"),
        ("COUNT(*)", "count(*)"),
        ("'a' || 'b' || c", "concat('a', 'b', c)"),
        ("'it''s \\n'", "'it\\'s \\n'"),
        ("NULL", "NULL"),
        ("`weird col`", "`weird col`"),
        ("\"event\"", "event"),
        ("a == 1 AND b <> 2", "((a = 1) AND (b != 2))"),
        ("(SELECT 1)", "(SELECT 1)"),
    ];
    for (hogql, want) in cases {
        let got = sql(&format!("SELECT {hogql} AS x"));
        assert_eq!(got, format!("SELECT {want} AS `x` LIMIT 100 {SUFFIX}"), "{hogql}");
    }
}

#[test]
fn columns_get_their_source_text_as_name() {
    assert_eq!(sql("SELECT count()"), format!("SELECT count() LIMIT 100 {SUFFIX}"));
    assert_eq!(sql("SELECT count( )"), format!("SELECT count() AS `count( )` LIMIT 100 {SUFFIX}"));
    assert_eq!(sql("SELECT 1+1"), format!("SELECT (1 + 1) AS `1+1` LIMIT 100 {SUFFIX}"));
    assert_eq!(sql("SELECT `count()`"), format!("SELECT `count()` LIMIT 100 {SUFFIX}"));
}

#[test]
fn joins_subqueries_and_ctes() {
    let q = sql("SELECT e.event, p.person_id FROM events e LEFT OUTER JOIN person_distinct_ids AS p \
         ON e.distinct_id = p.distinct_id");
    assert_eq!(
        q,
        format!(
            "SELECT e.event AS `e.event`, p.person_id AS `p.person_id` FROM {EV} AS e LEFT JOIN \
             (SELECT * FROM person_distinct_ids FINAL WHERE team_id = 7 AND is_deleted = 0) AS p \
             ON (e.distinct_id = p.distinct_id) LIMIT 100 {SUFFIX}"
        )
    );
    assert!(sql("SELECT 1 FROM events JOIN persons USING (team_id)").contains(" INNER JOIN ("));
    assert!(sql("SELECT 1 FROM events CROSS JOIN persons").contains(" CROSS JOIN ("));
    assert_eq!(
        sql("WITH a AS (SELECT event FROM events) SELECT count() FROM a WHERE event IN a"),
        format!(
            "SELECT count() FROM (SELECT event FROM {EV} AS events) AS a WHERE (event IN (SELECT event FROM {EV} AS events)) \
             LIMIT 100 {SUFFIX}"
        )
    );
    // A CTE named like a table reads the table inside itself, not itself.
    assert_eq!(
        sql("WITH events AS (SELECT * FROM events WHERE event = 'x') SELECT count() FROM events"),
        format!("SELECT count() FROM (SELECT * FROM {EV} AS events WHERE (event = 'x')) AS events LIMIT 100 {SUFFIX}")
    );
    assert_eq!(
        sql("SELECT c FROM (SELECT count() AS c FROM events)"),
        format!("SELECT c FROM (SELECT count() AS `c` FROM {EV} AS events) LIMIT 100 {SUFFIX}")
    );
}

#[test]
fn unions_and_limits() {
    assert_eq!(
        sql("SELECT 1 UNION ALL SELECT 2"),
        format!("SELECT * FROM (SELECT 1 UNION ALL SELECT 2) LIMIT 100 {SUFFIX}")
    );
    assert_eq!(
        sql("SELECT 1 UNION DISTINCT (SELECT 2 LIMIT 1)"),
        format!("SELECT * FROM (SELECT DISTINCT * FROM (SELECT 1 UNION ALL SELECT 2 LIMIT 1)) LIMIT 100 {SUFFIX}")
    );
    assert_eq!(sql("SELECT 1 LIMIT 5"), format!("SELECT 1 LIMIT 5 {SUFFIX}"));
    assert_eq!(sql("SELECT 1 LIMIT 50000"), format!("SELECT 1 LIMIT 10000 {SUFFIX}"));
    assert_eq!(sql("SELECT 1 LIMIT 5 OFFSET 3"), format!("SELECT 1 LIMIT 3, 5 {SUFFIX}"));
    assert_eq!(sql("SELECT 1 LIMIT 3, 50000;"), format!("SELECT 1 LIMIT 3, 10000 {SUFFIX}"));
    assert_eq!(sql("(SELECT 1 LIMIT 20)"), format!("SELECT 1 LIMIT 20 {SUFFIX}"));
    // Inner limits are the query's own.
    assert!(sql("SELECT * FROM (SELECT 1 LIMIT 50000)").contains("(SELECT 1 LIMIT 50000) LIMIT 100"));
    assert_eq!(sql("SELECT 1 ORDER BY 1 DESC"), format!("SELECT 1 ORDER BY 1 DESC LIMIT 100 {SUFFIX}"));
    let small = Context { default_limit: 3, max_limit: 4, max_execution_time_secs: 5, ..ctx() };
    assert_eq!(translate("SELECT 1", &small).unwrap(), "SELECT 1 LIMIT 3 SETTINGS max_execution_time = 5");
    assert_eq!(translate("SELECT 1 LIMIT 9", &small).unwrap(), "SELECT 1 LIMIT 4 SETTINGS max_execution_time = 5");
}

#[test]
fn comments_are_skipped() {
    assert_eq!(
        sql("SELECT /* hi */ 1 -- there\n FROM events"),
        format!("SELECT 1 FROM {EV} AS events LIMIT 100 {SUFFIX}")
    );
}

/// (query, message fragment, line, column)
const REJECTED: &[(&str, &str, usize, usize)] = &[
    ("SELECT CAST(event AS Array(String)) FROM events", "CAST to this type is not supported; use one of String", 1, 22),
    ("SELECT CAST(event String) FROM events", "expected `AS`, found `String`", 1, 19),
    ("", "the query is empty", 1, 1),
    ("INSERT INTO events VALUES (1)", "only SELECT queries are allowed, not `INSERT`", 1, 1),
    ("  drop table events", "not `DROP`", 1, 3),
    ("ALTER TABLE events DELETE WHERE 1", "not `ALTER`", 1, 1),
    ("SELECT * FROM system.tables", "qualified table names are not allowed (`system.tables`)", 1, 15),
    ("SELECT * FROM SyStEm.TaBlEs", "qualified table names", 1, 15),
    ("SELECT * FROM `system`.`tables`", "qualified table names", 1, 15),
    ("SELECT * FROM default.events", "qualified table names", 1, 15),
    ("SELECT * FROM /* x */ system.tables", "qualified table names", 1, 23),
    ("SELECT * FROM tables", "unknown table `tables`", 1, 15),
    ("SELECT * FROM events_local", "unknown table `events_local`", 1, 15),
    ("SELECT * FROM hogpipe_migrations", "unknown table", 1, 15),
    ("SELECT * FROM file('/etc/passwd')", "table functions are not allowed (`file(…)`)", 1, 15),
    ("SELECT * FROM url('http://x', CSV, 'a String')", "table functions are not allowed (`url(…)`)", 1, 15),
    ("SELECT * FROM remote('h', system.one)", "table functions", 1, 15),
    ("SELECT * FROM numbers(10)", "table functions", 1, 15),
    ("SELECT * FROM s3('x')", "table functions", 1, 15),
    ("SELECT * FROM mysql('h', 'd', 't', 'u', 'p')", "table functions", 1, 15),
    ("SELECT 1 SETTINGS max_execution_time = 1000", "SETTINGS is not allowed", 1, 10),
    ("SELECT 1 FROM events SETTINGS readonly = 0", "SETTINGS is not allowed", 1, 22),
    ("SELECT 1 FORMAT TSV", "FORMAT is not allowed", 1, 10),
    ("SELECT 1 INTO OUTFILE 'x'", "INTO OUTFILE is not allowed", 1, 10),
    ("SELECT 1; SELECT 2", "multiple statements", 1, 11),
    ("SELECT 1; DROP TABLE events", "multiple statements", 1, 11),
    ("SELECT 1;;", "multiple statements", 1, 10),
    ("SELECT file('x')", "function `file` is not allowed", 1, 8),
    ("SELECT url('x')", "function `url` is not allowed", 1, 8),
    ("SELECT dictGet('d', 'a', 1)", "function `dictGet` is not allowed", 1, 8),
    ("SELECT joinGet('j', 'a', 1)", "function `joinGet`", 1, 8),
    ("SELECT getSetting('readonly')", "function `getSetting`", 1, 8),
    ("SELECT hostName()", "function `hostName`", 1, 8),
    ("SELECT currentDatabase()", "function `currentDatabase`", 1, 8),
    ("SELECT sleep(3)", "function `sleep`", 1, 8),
    ("SELECT hasColumnInTable('system', 'tables', 'name')", "function `hasColumnInTable`", 1, 8),
    ("SELECT 1 WHERE 1 IN events", "IN takes a parenthesized list, a subquery or a CTE name; `events` is none", 1, 21),
    ("SELECT 1 WHERE 1 IN system.tables", "IN takes a parenthesized list", 1, 21),
    ("SELECT 1 FROM events WHERE 1 IN (event)", "IN (column) is not supported", 1, 34),
    ("SELECT 1 FROM events WHERE 1 IN (events.event)", "IN (column) is not supported", 1, 34),
    ("SELECT system.tables.name FROM events", "unknown table or alias `system`", 1, 8),
    ("SELECT x.* FROM events", "unknown table or alias `x`", 1, 8),
    ("SELECT count(1, 2)", "`count` takes 0 to 1 arguments, not 2", 1, 8),
    ("SELECT if(1)", "`if` takes 3 arguments, not 1", 1, 8),
    ("SELECT sum(1)(x)", "`sum` takes no parameters", 1, 8),
    ("SELECT lower(DISTINCT x)", "DISTINCT is for aggregate functions", 1, 8),
    ("SELECT sum(*)", "count(*) only", 1, 12),
    ("SELECT 1 FROM events FINAL", "FINAL is not needed", 1, 22),
    ("SELECT 1 FROM events ARRAY JOIN x", "ARRAY JOIN is not supported", 1, 22),
    ("SELECT 1 FROM events, persons", "comma joins are not supported", 1, 21),
    ("SELECT 1 FROM events ANY LEFT JOIN persons USING id", "ANY JOIN is not supported", 1, 22),
    ("SELECT 1 FROM events JOIN persons", "expected ON or USING", 1, 34),
    ("SELECT 1 UNION SELECT 2", "expected `ALL` or `DISTINCT` after UNION", 1, 16),
    ("SELECT {x:String}", "query parameters", 1, 8),
    ("SELECT 'abc", "unterminated string", 1, 8),
    ("SELECT 1 LIMIT -1", "expected a whole number", 1, 16),
    ("SELECT 1 LIMIT 99999999999999999999999", "whole number", 1, 16),
    ("SELECT FROM events", "expected an expression, found `FROM`", 1, 8),
    ("SELECT 1 +", "expected an expression, found the end of the query", 1, 11),
    ("SELECT (1", "expected `)`", 1, 10),
    ("SELECT\n  1 FROM\n  events WHERE\n  foo(1)", "function `foo`", 4, 3),
    ("SELECT properties.a[1] FROM events", "property keys in `[…]` must be strings", 1, 21),
    ("SELECT person.name FROM events", "unknown person field `name`", 1, 15),
    ("SELECT e.event.x FROM events e", "`event` has no fields", 1, 16),
    ("WITH 1 AS x SELECT x", "expected a CTE name", 1, 6),
    ("WITH a AS (SELECT 1), a AS (SELECT 2) SELECT 1", "CTE `a` is defined twice", 1, 6),
    ("WITH a AS (SELECT * FROM system.one) SELECT 1", "qualified table names", 1, 26),
    ("SELECT 1 FROM events PREWHERE 1", "PREWHERE is not supported", 1, 22),
    ("SELECT 1 FROM events SAMPLE 0.1", "SAMPLE is not supported", 1, 22),
];

#[test]
fn cast_becomes_the_type_conversion_function() {
    assert_eq!(
        sql("SELECT CAST(properties.amount AS Float64) AS a, cast(1.5 AS int64), CAST(timestamp AS Date) FROM events"),
        format!(
            "SELECT toFloat64({}) AS `a`, toInt64(1.5) AS `cast(1.5 AS int64)`, toDate(timestamp) AS `CAST(timestamp AS Date)` \
             FROM {EV} AS events LIMIT 100 {SUFFIX}",
            prop("properties", "amount")
        )
    );
}

#[test]
fn rejections_say_what_and_where() {
    for (q, msg, line, column) in REJECTED {
        let e = match translate(q, &ctx()) {
            Ok(s) => panic!("{q:?} was accepted: {s}"),
            Err(e) => e,
        };
        assert!(e.message.contains(msg), "{q:?}: {e}");
        assert_eq!((e.line, e.column), (*line, *column), "{q:?}: {e}");
        assert_eq!(e.to_string(), format!("line {line}, column {column}: {}", e.message));
    }
}

#[test]
fn deep_nesting_and_huge_input_are_errors_not_crashes() {
    // Run on a thread with a small stack, like a server's worker thread.
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
            let e = translate(&deep, &ctx()).unwrap_err();
            assert!(e.message.contains("nested too deeply"), "{e}");
            let sub = format!("SELECT {}1{}", "(SELECT ".repeat(200), ")".repeat(200));
            assert!(translate(&sub, &ctx()).unwrap_err().message.contains("nested too deeply"));
            let neg = format!("SELECT {}1", "- ".repeat(500));
            assert!(translate(&neg, &ctx()).unwrap_err().message.contains("nested too deeply"));
            let nots = format!("SELECT {}1", "NOT ".repeat(500));
            assert!(translate(&nots, &ctx()).unwrap_err().message.contains("nested too deeply"));
            // Just under the limit works.
            let ok = format!("SELECT {}1{}", "(".repeat(90), ")".repeat(90));
            assert_eq!(
                translate(&ok, &ctx()).unwrap(),
                format!("SELECT 1 AS `{}1{}` LIMIT 100 {SUFFIX}", "(".repeat(90), ")".repeat(90))
            );
            // Long flat chains are not nesting.
            let chain = format!("SELECT 1{}", " + 1".repeat(5000));
            assert!(translate(&chain, &ctx()).is_ok());
            let huge = format!("SELECT '{}'", "x".repeat(MAX_QUERY_BYTES));
            let e = translate(&huge, &ctx()).unwrap_err();
            assert!(e.message.contains("too long"), "{e}");
            // CTEs that double at each step are stopped.
            let mut q = String::from("WITH c0 AS (SELECT event FROM events)");
            for i in 1..40 {
                q.push_str(&format!(", c{i} AS (SELECT * FROM c{} AS a CROSS JOIN c{} AS b)", i - 1, i - 1));
            }
            q.push_str(" SELECT count() FROM c39");
            let e = translate(&q, &ctx()).unwrap_err();
            assert!(e.message.contains("too large"), "{e}");
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn garbage_never_panics() {
    let samples = [
        "SELECT",
        "SELECT (",
        "SELECT [",
        "SELECT CASE",
        "SELECT CASE WHEN",
        "SELECT x ->",
        "SELECT f(",
        "SELECT f()(",
        "SELECT a.",
        "SELECT 1 FROM",
        "SELECT 1 FROM (",
        "SELECT 1 FROM e JOIN",
        "WITH",
        "WITH a AS (",
        "(",
        ")",
        "SELECT 1 LIMIT",
        "SELECT 1 LIMIT 1,",
        "SELECT 1 ORDER BY",
        "SELECT INTERVAL 1",
        "SELECT 0x",
        "SELECT 1e",
        "SELECT `",
        "SELECT \"",
        "SELECT 'a\\",
        "SELECT 1 IN",
        "SELECT 1 BETWEEN 1",
        "SELECT 1 IS",
        "SELECT é",
        "SELECT (x, y) ->",
        "SELECT 1 UNION ALL",
        "SELECT * FROM events AS",
        "SELECT .5, 1.e",
        "SELECT x[",
    ];
    for s in samples {
        let _ = translate(s, &ctx());
    }
    // Every prefix of a rich query.
    let rich = "WITH a AS (SELECT event, count() c FROM events e LEFT JOIN persons p ON e.person_id = p.id \
                WHERE properties.$x['y'] IN (1, 2) GROUP BY event HAVING c > 1 ORDER BY c DESC LIMIT 1, 2) \
                SELECT quantile(0.5)(c), arrayMap(x -> x * 2, [1]), CASE WHEN 1 THEN 'a' END FROM a \
                UNION ALL SELECT 1, 2, 3;";
    for (i, _) in rich.char_indices() {
        let _ = translate(&rich[..i], &ctx());
    }
    assert!(translate(rich, &ctx()).is_ok(), "{:?}", translate(rich, &ctx()));
}
