//! A small statement builder: SQL text with `$n` placeholders plus typed arguments, bound in
//! order, and the neutral `Row` both executors produce. Optional filters append clauses and
//! arguments together so the numbering stays right.

use strata_core::cursor::PageRequest;
use strata_core::error::{CoreError, Result};

#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Str(Option<String>),
}

pub(crate) struct Q {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Q {
    pub fn new(sql: &str) -> Self {
        Self { sql: sql.to_owned(), args: Vec::new() }
    }

    pub fn int(mut self, v: i64) -> Self {
        self.args.push(Arg::Int(Some(v)));
        self
    }

    pub fn opt_int(mut self, v: Option<i64>) -> Self {
        self.args.push(Arg::Int(v));
        self
    }

    pub fn str(mut self, v: &str) -> Self {
        self.args.push(Arg::Str(Some(v.to_owned())));
        self
    }

    pub fn opt_str(mut self, v: Option<String>) -> Self {
        self.args.push(Arg::Str(v));
        self
    }

    /// Appends `text`, where `$?` stands for the next placeholder, binding `v` to it.
    pub fn and_int(mut self, text: &str, v: i64) -> Self {
        let n = self.args.len() + 1;
        self.sql.push_str(&text.replace("$?", &format!("${n}")));
        self.int(v)
    }

    pub fn and_str(mut self, text: &str, v: &str) -> Self {
        let n = self.args.len() + 1;
        self.sql.push_str(&text.replace("$?", &format!("${n}")));
        self.str(v)
    }

    /// Appends `$n, $n+1, …` binding each of `values` (the inside of an `IN (…)`).
    pub fn list(mut self, values: &[String]) -> Self {
        for (i, v) in values.iter().enumerate() {
            self = self.and_str(if i == 0 { "$?" } else { ", $?" }, v);
        }
        self
    }

    /// Appends ` AND column IN ($n, …)` binding each of `values`, or nothing when there are none:
    /// a filter that may repeat in the query string and means any of its values.
    pub fn and_any_of<I>(self, column: &str, values: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let values: Vec<String> = values.into_iter().map(|v| v.as_ref().to_owned()).collect();
        if values.is_empty() {
            return self;
        }
        self.push(&format!(" AND {column} IN (")).list(&values).push(")")
    }

    pub fn push(mut self, text: &str) -> Self {
        self.sql.push_str(text);
        self
    }

    /// What the statement does, for logs and errors: its verb and first table
    /// (`SELECT FROM organizations`). Never an argument, so never a tenant's value.
    pub fn what(&self) -> String {
        let words: Vec<&str> = self.sql.split_whitespace().collect();
        let verb = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
        let table = if verb == "UPDATE" {
            words.get(1)
        } else {
            words.iter().position(|w| w.eq_ignore_ascii_case("FROM") || w.eq_ignore_ascii_case("INTO")).and_then(|i| words.get(i + 1))
        };
        match table {
            Some(t) => format!("{verb} {}", t.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))),
            None => verb,
        }
    }
}

/// The table an `INSERT INTO t …` or an `UPDATE t …` writes (empty for any other statement).
pub(crate) fn written_table(q: &Q) -> &str {
    let rest = q.sql.strip_prefix("INSERT INTO ").or_else(|| q.sql.strip_prefix("UPDATE ")).unwrap_or_default();
    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or_default()
}

/// Whether `sql` names `table` as a whole word (`events` is not in `credit_events`).
pub(crate) fn mentions(sql: &str, table: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    sql.match_indices(table).any(|(i, _)| !word(sql[..i].chars().next_back()) && !word(sql[i + table.len()..].chars().next()))
}

/// `main` with `writes` as data-modifying `WITH` items ahead of it (`later_0`, `later_1`, …):
/// PostgreSQL runs each to completion whether or not `main` reads it, in `main`'s snapshot. A
/// counted write returns a row per row it changed. `main` keeps its placeholders; each write's
/// are shifted past those before it.
pub(crate) fn fuse(main: &Q, writes: Vec<(Q, i64)>) -> Q {
    let mut args = main.args.clone();
    let mut items = Vec::with_capacity(writes.len());
    for (i, (q, counted)) in writes.into_iter().enumerate() {
        let returning = if counted > 0 { " RETURNING 1" } else { "" };
        items.push(format!("later_{i} AS ({}{returning})", shift_placeholders(&q.sql, args.len())));
        args.extend(q.args);
    }
    let sql = match main.sql.strip_prefix("WITH ") {
        Some(rest) => format!("WITH {}, {rest}", items.join(", ")),
        None => format!("WITH {} {}", items.join(", "), main.sql),
    };
    Q { sql, args }
}

/// Bound arguments per statement of deferred writes at most (PostgreSQL takes 65,535).
pub(crate) const MAX_ARGS: usize = 30_000;

/// Statements running `writes` (each with how many rows it must change, 0: not counted), in
/// order, each with at most `MAX_ARGS` arguments (a write with more goes alone) and answering
/// one row with one column, `counted`: how many rows its counted writes changed, which must be
/// the second value returned.
pub(crate) fn writes_only(writes: Vec<(Q, i64)>) -> Vec<(Q, i64)> {
    let one = |writes: Vec<(Q, i64)>| {
        let expected = writes.iter().map(|(_, n)| n).sum();
        let counted: Vec<String> =
            writes.iter().enumerate().filter(|(_, (_, n))| *n > 0).map(|(i, _)| format!("(SELECT count(*) FROM later_{i})")).collect();
        let main = match counted.is_empty() {
            true => "SELECT CAST(0 AS BIGINT) AS counted".to_owned(),
            false => format!("SELECT CAST({} AS BIGINT) AS counted", counted.join(" + ")),
        };
        (fuse(&Q::new(&main), writes), expected)
    };
    let mut out = Vec::new();
    let (mut chunk, mut args) = (Vec::new(), 0);
    for w in writes {
        if !chunk.is_empty() && args + w.0.args.len() > MAX_ARGS {
            out.push(one(std::mem::take(&mut chunk)));
            args = 0;
        }
        args += w.0.args.len();
        chunk.push(w);
    }
    if !chunk.is_empty() {
        out.push(one(chunk));
    }
    out
}

/// `sql` with every placeholder `$n` renumbered `$(n + by)`.
pub(crate) fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some((_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
            n.push(*d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(v) => out.push_str(&(v + by).to_string()),
            Err(_) => out.push_str(&n),
        }
    }
    out
}

/// `($1, …, $c), ($c+1, …), …`: the placeholders of a multi-row `VALUES` of `rows` rows of
/// `columns` values each.
pub(crate) fn values_placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|i| format!("({})", (1..=columns).map(|c| format!("${}", i * columns + c)).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row `INSERT`: well under both engines' limit on bound parameters.
pub(crate) const ROWS_PER_INSERT: usize = 500;

/// One value of a result row.
#[derive(Clone, Debug)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// A result row, read whole, with its column names.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub names: std::sync::Arc<[String]>,
    pub cells: Vec<Cell>,
}

impl Row {
    #[track_caller]
    fn cell(&self, name: &str) -> Result<&Cell> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.cells.get(i))
            .ok_or_else(|| CoreError::internal(format!("no column {name}")))
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        match self.cell(name)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            Cell::Text(t) => Err(CoreError::internal(format!("column {name} holds text {t:?}, not an integer"))),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64> {
        self.opt_int(name)?.ok_or_else(|| CoreError::internal(format!("column {name} is null")))
    }

    pub fn opt_text(&self, name: &str) -> Result<Option<String>> {
        match self.cell(name)? {
            Cell::Null => Ok(None),
            Cell::Text(t) => Ok(Some(t.clone())),
            Cell::Int(v) => Err(CoreError::internal(format!("column {name} holds {v}, not text"))),
        }
    }

    pub fn text(&self, name: &str) -> Result<String> {
        self.opt_text(name)?.ok_or_else(|| CoreError::internal(format!("column {name} is null")))
    }
}

/// Appends a keyset page, newest first, to a list's `WHERE`: rows before the cursor's `seq`,
/// one more than the limit (it says whether a next page exists).
pub(crate) fn page(q: Q, page: PageRequest) -> Q {
    let q = match page.before_seq {
        Some(s) => q.and_int(" AND seq < $?", s),
        None => q,
    };
    q.and_int(" ORDER BY seq DESC LIMIT $?", i64::from(page.limit) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_described_by_its_verb_and_table_only() {
        assert_eq!(Q::new("SELECT a, b FROM organizations o JOIN x ON 1 WHERE id = $1").what(), "SELECT organizations");
        assert_eq!(Q::new("INSERT INTO transfers (id) VALUES ($1)").what(), "INSERT transfers");
        assert_eq!(Q::new("UPDATE wallets SET a = $2 WHERE org_id = $1").what(), "UPDATE wallets");
        assert_eq!(Q::new("DELETE FROM events WHERE seq < $1").what(), "DELETE events");
        assert_eq!(Q::new("SELECT 1 AS one").what(), "SELECT");
    }

    #[test]
    fn deferred_inserts_ride_ahead_of_a_statement_with_their_placeholders_shifted() {
        let main = Q::new("UPDATE idempotency_records SET reply = $1 WHERE key = $2").str("r").str("k");
        let audit = Q::new("INSERT INTO audit_log (id, data) VALUES ($1, $2)").str("a").str("{}");
        let event = Q::new("INSERT INTO events (id) VALUES ($1)").str("e");
        let fused = fuse(&main, vec![(audit, 0), (event, 0)]);
        assert_eq!(
            fused.sql,
            "WITH later_0 AS (INSERT INTO audit_log (id, data) VALUES ($3, $4)), later_1 AS (INSERT INTO events (id) VALUES ($5)) \
             UPDATE idempotency_records SET reply = $1 WHERE key = $2"
        );
        let args: Vec<String> = fused.args.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(args.len(), 5);
        assert!(args[0].contains("\"r\"") && args[2].contains("\"a\"") && args[4].contains("\"e\""), "{args:?}");
        // A statement that is itself a WITH list gets the inserts at the head of its list.
        let with = Q::new("WITH w AS (UPDATE wallets SET a = $1 RETURNING a) SELECT a FROM w").int(1);
        let fused = fuse(&with, vec![(Q::new("INSERT INTO transfers (id) VALUES ($1)").str("t"), 0)]);
        assert_eq!(
            fused.sql,
            "WITH later_0 AS (INSERT INTO transfers (id) VALUES ($2)), w AS (UPDATE wallets SET a = $1 RETURNING a) SELECT a FROM w"
        );
        assert_eq!(shift_placeholders("SELECT $1, $12, '$'", 10), "SELECT $11, $22, '$'");
    }

    #[test]
    fn deferred_writes_alone_answer_how_many_rows_the_counted_ones_changed() {
        let claim = Q::new("UPDATE idempotency_records SET status = $1 WHERE idem_key = $2").int(201).str("k");
        let event = Q::new("INSERT INTO events (id) VALUES ($1)").str("e");
        let [(q, expected)]: [(Q, i64); 1] = writes_only(vec![(event, 0), (claim, 1)]).try_into().ok().unwrap();
        assert_eq!(expected, 1);
        assert_eq!(
            q.sql,
            "WITH later_0 AS (INSERT INTO events (id) VALUES ($1)), \
             later_1 AS (UPDATE idempotency_records SET status = $2 WHERE idem_key = $3 RETURNING 1) \
             SELECT CAST((SELECT count(*) FROM later_1) AS BIGINT) AS counted"
        );
        let [(q, expected)]: [(Q, i64); 1] =
            writes_only(vec![(Q::new("INSERT INTO events (id) VALUES ($1)").str("e"), 0)]).try_into().ok().unwrap();
        assert_eq!((expected, q.sql.ends_with("SELECT CAST(0 AS BIGINT) AS counted")), (0, true));
        // Past the bound on arguments, a second statement.
        let big = |n: usize| (0..n).fold(Q::new("INSERT INTO audit_log (id) VALUES ($1)"), |q, _| q.str("a"));
        let split = writes_only(vec![(big(MAX_ARGS - 10), 0), (big(20), 0), (big(5), 0)]);
        assert_eq!(split.iter().map(|(q, _)| q.args.len()).collect::<Vec<_>>(), [MAX_ARGS - 10, 25]);
    }

    #[test]
    fn a_table_is_mentioned_only_as_a_whole_word() {
        assert_eq!(written_table(&Q::new("INSERT INTO events (id) VALUES ($1)")), "events");
        assert_eq!(written_table(&Q::new("UPDATE wallets SET a = $1")), "wallets");
        assert_eq!(written_table(&Q::new("SELECT 1 FROM wallets")), "");
        assert!(mentions("SELECT seq FROM events WHERE id = $1", "events"));
        assert!(!mentions("INSERT INTO credit_events (id) VALUES ($1)", "events"));
        assert!(!mentions("SELECT eventsx FROM t", "events"));
        assert!(mentions("UPDATE transfers SET status = $2", "transfers"));
    }
}
