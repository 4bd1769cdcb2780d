//! `strata bench --orgs N --transfers M`: bulk seeds a bench's own scratch database with other
//! tenants, so the scenarios run against tables of a realistic size. The shape is a square:
//! about √N partners, each with N/√N − 1 children (1,000,000 orgs: 1,000 partners × 999
//! children), two well-formed keys per org (real key ids and secret hashes of secrets nobody
//! keeps), and M transfers spread over the partners: each partner buys its credits once and
//! allocates them one at a time, round robin, to its children.
//!
//! The rows are what the services write for the same operations (organizations, wallets,
//! api_keys, transfers, and the ledger entries of `credit_events`, each stamped with its
//! wallet's balance after), and every wallet's buckets equal the sum of its transfers, so
//! `strata ledger check` holds on a seeded database. Rows go in directly, not through the
//! services: PostgreSQL through `COPY … FROM STDIN` (then `ANALYZE`, as autovacuum would on a
//! live database), SQLite through prepared inserts, committed every few hundred thousand rows,
//! with `synchronous=OFF` on the seeding connection alone (a scratch database).

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use strata_core::apikey::{Env, MintedKey, Tier};
use strata_core::clock::Timestamp;
use strata_core::credits::Account;
use strata_core::error::{CoreError, Result};
use strata_core::id::{ApiKeyId, OrgId, TxnId};
use strata_core::org::search_key;
use strata_core::scope::{Scope, Scopes};
use strata_store::Backend;

use crate::bench::err;

/// Credits each partner keeps beyond what it allocates.
const PARTNER_SPARE: i64 = 1_000;
/// SQLite: rows per committed transaction.
const ROWS_PER_COMMIT: usize = 500_000;

/// How many partners, children each, and transfers to seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub partners: usize,
    /// Children of each partner.
    pub children: usize,
    pub transfers: u64,
}

impl Shape {
    /// About `orgs` organizations in total (partners included) as √orgs partners of equal
    /// size, and `transfers` transfers.
    pub fn new(orgs: usize, transfers: u64) -> Self {
        let partners = ((orgs as f64).sqrt().round() as usize).max(1).min(orgs.max(1));
        let children = (orgs / partners).saturating_sub(1);
        Self { partners, children, transfers }
    }

    pub fn orgs(&self) -> usize {
        self.partners * (self.children + 1)
    }

    /// Transfers filed under partner `p` (the first is its purchase).
    fn transfers_of(&self, p: usize) -> u64 {
        let n = self.partners as u64;
        self.transfers / n + u64::from((p as u64) < self.transfers % n)
    }
}

/// What a seeding wrote and how long it took.
#[derive(Debug)]
pub struct Seeded {
    pub orgs: usize,
    pub keys: usize,
    pub transfers: u64,
    pub entries: u64,
    pub seconds: f64,
}

impl std::fmt::Display for Seeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seeded {} orgs, {} keys, {} transfers and {} ledger entries in {:.1} s",
            self.orgs, self.keys, self.transfers, self.entries, self.seconds
        )
    }
}

/// Seeds `shape` into the database of `backend` (a bench's scratch database: never a real one),
/// printing progress to stderr. Errors: the database's, as internal errors.
pub async fn seed(backend: &Backend, shape: Shape, now: Timestamp) -> Result<Seeded> {
    let started = Instant::now();
    let mut seeded = match backend {
        Backend::Postgres { url } => seed_postgres(url, shape, now, started).await?,
        Backend::Sqlite { dir } => {
            let path = dir.join(strata_store::SQLITE_FILE);
            tokio::task::spawn_blocking(move || seed_sqlite(path, shape, now, started)).await.map_err(err)??
        }
    };
    seeded.seconds = started.elapsed().as_secs_f64();
    note(format_args!("{seeded}"));
    Ok(seeded)
}

/// A line of progress on stderr (the bench's figures go to stdout).
fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// One value of a seeded row.
enum Cell {
    Text(String),
    Int(i64),
    Null,
}

/// Rows for one table.
struct Table {
    name: &'static str,
    columns: &'static str,
    rows: Vec<Vec<Cell>>,
}

/// One partner's rows, in an order that satisfies the foreign keys.
struct Chunk {
    tables: [Table; 5],
}

impl Chunk {
    fn new() -> Self {
        let t = |name, columns| Table { name, columns, rows: Vec::new() };
        Self {
            tables: [
                t("organizations", "id, parent_id, name, status, metadata, created_at, updated_at, name_key"),
                t("wallets", "org_id, prepaid_balance, period_start, updated_at"),
                t("api_keys", "id, org_id, name, env, keyid, secret_hash, scopes, tier, status, created_at"),
                t("transfers", "id, org_id, debit_account, credit_account, amount, kind, status, metadata, created_at"),
                t("credit_events", "id, org_id, credits, event_type, balance_after_prepaid, usage_after_period, metadata, created_at"),
            ],
        }
    }

    fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}

/// Builds partner `p`'s rows: the partner, its children, their wallets and keys, its purchase
/// and its allocations with their ledger entries.
fn partner_chunk(shape: &Shape, p: usize, now: Timestamp) -> Chunk {
    use Cell::{Int, Null, Text};
    let mut c = Chunk::new();
    let at = now.millis();
    let partner = OrgId::new();
    let children: Vec<OrgId> = (0..shape.children).map(|_| OrgId::new()).collect();
    let scopes = Scopes::new([Scope::OrgAdmin, Scope::AllData]).to_stored();
    let mut org = |id: OrgId, parent: Option<OrgId>, name: String| {
        c.tables[0].rows.push(vec![
            Text(id.uuid_string()),
            parent.map_or(Null, |p| Text(p.uuid_string())),
            Text(name.clone()),
            Text("active".into()),
            Text("{}".into()),
            Int(at),
            Int(at),
            Text(search_key(&name)),
        ]);
        for k in 0..2 {
            let minted = MintedKey::generate(Env::Live);
            c.tables[2].rows.push(vec![
                Text(ApiKeyId::new().uuid_string()),
                Text(id.uuid_string()),
                Text(format!("seed-{k}")),
                Text(Env::Live.as_str().into()),
                Text(minted.keyid),
                Text(minted.secret_hash),
                Text(scopes.clone()),
                Text(Tier::Standard.as_str().into()),
                Text("active".into()),
                Int(at),
            ]);
        }
    };
    org(partner, None, format!("seed-p{p}"));
    for (i, child) in children.iter().enumerate() {
        org(*child, Some(partner), format!("seed-p{p}-c{i}"));
    }

    let mut partner_balance = 0_i64;
    let mut child_balance = vec![0_i64; children.len()];
    let total = shape.transfers_of(p);
    let allocations = if children.is_empty() { 0 } else { total.saturating_sub(1) as i64 };
    let mut transfer = |id: TxnId, org: OrgId, debit: Account, credit: Account, amount: i64, kind: &str, metadata: String| {
        c.tables[3].rows.push(vec![
            Text(id.uuid_string()),
            Text(org.uuid_string()),
            Text(debit.to_stored()),
            Text(credit.to_stored()),
            Int(amount),
            Text(kind.into()),
            Text("posted".into()),
            Text(metadata),
            Int(at),
        ]);
    };
    let mut entries: Vec<Vec<Cell>> = Vec::new();
    let mut entry = |org: OrgId, credits: i64, kind: &str, balance: i64, metadata: String| {
        let id = format!("cev_{}", ulid::Ulid::from_parts(u64::try_from(at).unwrap_or(0), rand_bits()));
        entries.push(vec![
            Text(id),
            Text(org.uuid_string()),
            Int(credits),
            Text(kind.into()),
            Int(balance),
            Int(0),
            Text(metadata),
            Int(at),
        ]);
    };
    for n in 0..total {
        let id = TxnId::new();
        if n == 0 || children.is_empty() {
            let amount = if n == 0 { allocations + PARTNER_SPARE } else { PARTNER_SPARE };
            partner_balance += amount;
            let meta = json!({ "transferId": id, "trigger": "manual" }).to_string();
            transfer(id, partner, Account::Purchases, Account::Prepaid(partner), amount, "purchase", meta.clone());
            entry(partner, amount, "purchase", partner_balance, meta);
        } else {
            let i = (n as usize - 1) % children.len();
            let child = children[i];
            partner_balance -= 1;
            child_balance[i] += 1;
            let side =
                |counterparty: OrgId| json!({ "transferId": id, "counterpartyOrgId": counterparty, "trigger": "manual" }).to_string();
            transfer(id, child, Account::Prepaid(partner), Account::Prepaid(child), 1, "allocation", side(partner));
            entry(partner, -1, "allocation", partner_balance, side(child));
            entry(child, 1, "allocation", child_balance[i], side(partner));
        }
    }
    c.tables[4].rows = entries;

    let month = now.month_bounds().0.millis();
    for (org, balance) in std::iter::once((partner, partner_balance)).chain(children.iter().copied().zip(child_balance)) {
        c.tables[1].rows.push(vec![Text(org.uuid_string()), Int(balance), Int(month), Int(at)]);
    }
    c
}

/// Eighty random bits for a ledger entry's ULID (from a v4 UUID's 122, rather than another
/// random number crate here).
fn rand_bits() -> u128 {
    u128::from_str_radix(&TxnId::new().uuid_string().replace('-', ""), 16).unwrap_or(0) & ((1 << 80) - 1)
}

/// Counts what the seeding wrote so far and prints progress every tenth of the partners.
struct Progress {
    seeded: Seeded,
    shape: Shape,
    started: Instant,
}

impl Progress {
    fn new(shape: Shape, started: Instant) -> Self {
        Self { seeded: Seeded { orgs: 0, keys: 0, transfers: 0, entries: 0, seconds: 0.0 }, shape, started }
    }

    fn done(&mut self, p: usize, c: &Chunk) {
        self.seeded.orgs += c.tables[0].rows.len();
        self.seeded.keys += c.tables[2].rows.len();
        self.seeded.transfers += c.tables[3].rows.len() as u64;
        self.seeded.entries += c.tables[4].rows.len() as u64;
        let step = (self.shape.partners / 10).max(1);
        if (p + 1).is_multiple_of(step) || p + 1 == self.shape.partners {
            note(format_args!(
                "seeding: {}/{} partners, {} orgs, {} transfers, {:.1} s",
                p + 1,
                self.shape.partners,
                self.seeded.orgs,
                self.seeded.transfers,
                self.started.elapsed().as_secs_f64()
            ));
        }
    }
}

async fn seed_postgres(url: &str, shape: Shape, now: Timestamp, started: Instant) -> Result<Seeded> {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(err)?;
    let mut progress = Progress::new(shape, started);
    for p in 0..shape.partners {
        let chunk = partner_chunk(&shape, p, now);
        for t in &chunk.tables {
            if t.rows.is_empty() {
                continue;
            }
            let mut copy = conn.copy_in_raw(&format!("COPY {} ({}) FROM STDIN", t.name, t.columns)).await.map_err(err)?;
            copy.send(copy_text(&t.rows).into_bytes()).await.map_err(err)?;
            copy.finish().await.map_err(err)?;
        }
        progress.done(p, &chunk);
    }
    note(format_args!("seeding: ANALYZE"));
    conn.execute("ANALYZE").await.map_err(err)?;
    Ok(progress.seeded)
}

/// Rows in `COPY`'s text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_text(rows: &[Vec<Cell>]) -> String {
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            match cell {
                Cell::Null => out.push_str("\\N"),
                Cell::Int(n) => out.push_str(&n.to_string()),
                Cell::Text(s) => {
                    for ch in s.chars() {
                        match ch {
                            '\\' => out.push_str("\\\\"),
                            '\t' => out.push_str("\\t"),
                            '\n' => out.push_str("\\n"),
                            '\r' => out.push_str("\\r"),
                            c => out.push(c),
                        }
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match self {
            Cell::Text(s) => ToSqlOutput::from(s.as_str()),
            Cell::Int(n) => ToSqlOutput::from(*n),
            Cell::Null => ToSqlOutput::from(rusqlite::types::Null),
        })
    }
}

fn seed_sqlite(path: PathBuf, shape: Shape, now: Timestamp, started: Instant) -> Result<Seeded> {
    let db = |e: rusqlite::Error| CoreError::internal_from("seeding the bench database", e);
    let conn = rusqlite::Connection::open(&path).map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(60)).map_err(db)?;
    conn.execute_batch("PRAGMA synchronous = OFF; BEGIN IMMEDIATE").map_err(db)?;
    let mut progress = Progress::new(shape, started);
    let mut uncommitted = 0;
    for p in 0..shape.partners {
        let chunk = partner_chunk(&shape, p, now);
        for t in &chunk.tables {
            let marks = vec!["?"; t.columns.split(',').count()].join(", ");
            let mut stmt = conn.prepare_cached(&format!("INSERT INTO {} ({}) VALUES ({marks})", t.name, t.columns)).map_err(db)?;
            for row in &t.rows {
                stmt.execute(rusqlite::params_from_iter(row.iter())).map_err(db)?;
            }
        }
        uncommitted += chunk.rows();
        if uncommitted >= ROWS_PER_COMMIT {
            conn.execute_batch("COMMIT; BEGIN IMMEDIATE").map_err(db)?;
            uncommitted = 0;
        }
        progress.done(p, &chunk);
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)").map_err(db)?;
    Ok(progress.seeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_orgs_is_a_thousand_partners_of_a_thousand() {
        let s = Shape::new(1_000_000, 10_000_000);
        assert_eq!((s.partners, s.children, s.orgs()), (1_000, 999, 1_000_000));
        assert_eq!((0..s.partners).map(|p| s.transfers_of(p)).sum::<u64>(), 10_000_000);
        let odd = Shape::new(1_000, 2_001);
        assert_eq!((odd.partners, odd.children), (32, 30));
        assert_eq!((0..odd.partners).map(|p| odd.transfers_of(p)).sum::<u64>(), 2_001);
    }

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let rows = vec![vec![Cell::Text("a\tb\\c".into()), Cell::Int(-3), Cell::Null]];
        assert_eq!(copy_text(&rows), "a\\tb\\\\c\t-3\t\\N\n");
    }
}
