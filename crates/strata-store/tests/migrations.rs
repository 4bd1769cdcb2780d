//! The rolling-upgrade rule for PostgreSQL migrations (docs/deploy.md, "Upgrades"): during an
//! upgrade, nodes of the previous release keep serving on the schema the first new node migrated,
//! so a migration after the released baseline may only expand the schema (new tables, nullable
//! or defaulted columns, indexes). A statement that could break the previous release's queries or
//! writes (dropping or renaming, changing a type, tightening a column, a new constraint) must say,
//! in a `-- compat:` comment above it (one comment covers the statements down to the next blank
//! line) why the previous release still works, or that the upgrade to it needs a stop; a later
//! release drops what the one before stopped using. SQLite serves one node and upgrades with a
//! stop, so its migrations are not bound by this.

use std::path::Path;

/// The newest migration of the released schema: every migration after it obeys the rule.
const RELEASED: u32 = 7;

/// Statement shapes that may break the previous release, as upper-case fragments.
const NEEDS_REASON: &[(&str, &str)] = &[
    ("DROP TABLE", "drops a table"),
    ("DROP COLUMN", "drops a column"),
    ("DROP CONSTRAINT", "drops a constraint"),
    ("DROP INDEX", "drops an index (a unique one may be what an ON CONFLICT names)"),
    ("RENAME", "renames"),
    ("SET NOT NULL", "tightens a column"),
    ("ADD CONSTRAINT", "adds a constraint the previous release's writes may break"),
    ("CREATE UNIQUE INDEX", "adds a uniqueness the previous release's writes may break"),
];

/// One finding: the migration, the statement's first line and what it does.
fn check(version: u32, sql: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut reason = false;
    let mut statement = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if statement.is_empty() && trimmed.starts_with("--") {
            reason |= trimmed.starts_with("-- compat:");
            continue;
        }
        if trimmed.is_empty() && statement.is_empty() {
            reason = false;
            continue;
        }
        let code = trimmed.split("--").next().unwrap_or_default();
        statement.push_str(code);
        statement.push(' ');
        if !code.trim_end().ends_with(';') {
            continue;
        }
        let upper = statement.to_uppercase();
        let adds_required_column = upper.contains("ADD COLUMN") && upper.contains("NOT NULL") && !upper.contains("DEFAULT");
        let mut what: Vec<&str> = NEEDS_REASON.iter().filter(|(frag, _)| upper.contains(frag)).map(|(_, what)| *what).collect();
        if upper.contains("ALTER COLUMN") && upper.contains(" TYPE ") {
            what.push("changes a column's type");
        }
        if adds_required_column {
            what.push("adds a NOT NULL column without a default (the previous release's inserts omit it)");
        }
        if !what.is_empty() && !reason {
            found.push(format!("migration {version:04}: `{}` {}", statement.trim(), what.join(", ")));
        }
        statement.clear();
    }
    found
}

#[test]
fn postgres_migrations_after_the_release_only_expand_the_schema_or_say_why_not() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut findings = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let version: u32 = name.split('_').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}: no version"));
        seen += 1;
        if version > RELEASED {
            findings.extend(check(version, &std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(seen >= RELEASED as usize, "read the migrations in {}", dir.display());
    assert!(
        findings.is_empty(),
        "these statements may break nodes of the previous release during a rolling upgrade; expand instead \
         (docs/deploy.md, \"Upgrades\"), or say why the previous release still works in a `-- compat:` comment \
         right above the statement:\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_rule_finds_what_breaks_the_previous_release_and_accepts_a_stated_reason() {
    let sql = "-- A new table and a nullable column.\nCREATE TABLE t (\n    id TEXT PRIMARY KEY,\n    type TEXT NOT NULL\n);\nALTER TABLE t ADD COLUMN note TEXT;\n\
               ALTER TABLE t ADD COLUMN n BIGINT NOT NULL DEFAULT 0;\nCREATE INDEX t_by_note ON t (note);\n";
    assert!(check(8, sql).is_empty(), "{:?}", check(8, sql));
    let bad = "ALTER TABLE t DROP COLUMN note;\nALTER TABLE t ADD COLUMN m BIGINT NOT NULL;\n\
               ALTER TABLE t\n    ALTER COLUMN id TYPE BIGINT;\nCREATE UNIQUE INDEX t_u ON t (note);\n";
    assert_eq!(check(8, bad).len(), 4, "{:?}", check(8, bad));
    let reasoned = "-- compat: the previous release never reads `note` (it stopped in 0.3).\nALTER TABLE t DROP COLUMN note;\n";
    assert!(check(8, reasoned).is_empty());
    // A reason covers the statements below it down to the next blank line.
    let block =
        "-- compat: unused since 0.3.\nALTER TABLE t DROP COLUMN a;\nALTER TABLE t DROP COLUMN b;\n\nALTER TABLE t DROP COLUMN c;\n";
    assert_eq!(check(8, block).len(), 1);
    assert!(check(8, block)[0].contains("COLUMN c"));
}
