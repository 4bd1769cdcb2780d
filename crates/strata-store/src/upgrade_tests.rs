//! Migration 0008 (client ids unique per org) on a database made by the migrations before it,
//! with rows in it: the rows survive with their order, and the new constraints hold. Runs on
//! SQLite, and on PostgreSQL too when `STRATA_TEST_DATABASE_URL` is set.

use strata_core::id::{JobId, OrgId, ProjectId};
use strata_core::store::Store;

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const A: &str = "0e0f5d1c-1111-4a1a-8a1a-000000000001";
const B: &str = "0e0f5d1c-2222-4a1a-8a1a-000000000002";
const C: &str = "0e0f5d1c-3333-4a1a-8a1a-000000000003";
const P1: &str = "5b1f0c3e-8a2d-4c6b-9e7f-000000000001";
const P2: &str = "5b1f0c3e-8a2d-4c6b-9e7f-000000000002";
const J1: &str = "job_01JDQ3ZK9X8V4T2R6N5M3H1G0F";
const C1: &str = "cnt_01JDQ3ZK9X8V4T2R6N5M3H1G0G";
const S1: &str = "post_01JDQ3ZK9X8V4T2R6N5M3H1G0H";

/// Rows as the schema of migration 0007 holds them: three orgs; A's project P1 with a job, its
/// container and a post; B's project P2.
fn seed() -> Vec<String> {
    let org = |id: &str, name: &str| {
        format!(
            "INSERT INTO organizations (id, parent_id, name, status, metadata, created_at, updated_at) \
             VALUES ('{id}', NULL, '{name}', 'active', '{{}}', 1, 1)"
        )
    };
    let project = |id: &str, org: &str, name: &str| {
        format!(
            "INSERT INTO projects (id, org_id, name, status, timezone, primary_language, metadata, created_at, updated_at) \
             VALUES ('{id}', '{org}', '{name}', 'active', 'UTC', 'en', '{{}}', 1, 1)"
        )
    };
    vec![
        org(A, "Alpha"),
        org(B, "Beta"),
        org(C, "Gamma"),
        project(P1, A, "Alpha one"),
        project(P2, B, "Beta one"),
        format!(
            "INSERT INTO jobs (id, org_id, project_id, api_key_id, status, format, variant_count, brief, reserved, planned_cost, test_mode, \
             container_ids, started_at, finish_at) \
             VALUES ('{J1}', '{A}', '{P1}', '{A}', 'completed', 'video_remix', 1, '{{}}', 0, 100, 1, '[\"{C1}\"]', 1, 2)"
        ),
        format!(
            "INSERT INTO containers (id, job_id, org_id, project_id, format, status, assets, created_at) \
             VALUES ('{C1}', '{J1}', '{A}', '{P1}', 'video_remix', 'completed', '[]', 1)"
        ),
        format!(
            "INSERT INTO scheduled_posts (id, org_id, project_id, container_id, platform, scheduled_for, status, created_at, updated_at) \
             VALUES ('{S1}', '{A}', '{P1}', '{C1}', 'tiktok', 5, 'scheduled', 1, 1)"
        ),
    ]
}

/// The backend's migrations up to 0007 only, as they ship (copied from the crate's folder, so
/// their checksums are the ones the full set checks later).
async fn before_0008(backend: &str, scratch: &Path) -> sqlx::migrate::Migrator {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let to = scratch.join(format!("migrations-{backend}"));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let name = entry.unwrap().file_name();
        if name.to_string_lossy().as_ref() < "0008" {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(to.as_path()).await.unwrap()
}

async fn upgraded_sqlite(dir: &Path) -> SqlStore {
    let migrator = before_0008("sqlite", dir).await;
    let dir = &dir.join("db");
    let path = create_sqlite_files(dir).unwrap();
    let options = SqliteConnectOptions::new().filename(&path);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    migrator.run(&pool).await.unwrap();
    for sql in seed() {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    SqlStore::connect(&Backend::Sqlite { dir: dir.to_owned() }).await.unwrap()
}

async fn upgraded_postgres(base: &str, scratch: &Path) -> SqlStore {
    let migrator = before_0008("postgres", scratch).await;
    let url = create_scratch_postgres(base, "strata_t_upgrade").await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    for sql in seed() {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    SqlStore::connect(&Backend::Postgres { url }).await.unwrap()
}

fn org(s: &str) -> OrgId {
    s.parse().unwrap()
}

fn prj(s: &str) -> ProjectId {
    s.parse().unwrap()
}

#[tokio::test]
async fn migration_0008_keeps_the_rows_and_makes_client_ids_unique_per_org() {
    let dir = tempfile::tempdir().unwrap();
    let store = match std::env::var("STRATA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => upgraded_postgres(&url, dir.path()).await,
        _ => upgraded_sqlite(dir.path()).await,
    };
    let (a, b, c, p1, p2) = (org(A), org(B), org(C), prj(P1), prj(P2));
    let j1 = JobId::from_stored(J1).unwrap();
    let mut tx = store.write().await.unwrap();
    // The rows are all there, in their order, found by (org, id) and only so.
    let alpha = tx.project(a, p1).await.unwrap().expect("A's project");
    assert_eq!((alpha.name.as_str(), alpha.seq), ("Alpha one", 1));
    assert_eq!(tx.project(b, p2).await.unwrap().expect("B's project").seq, 2);
    assert!(tx.project(b, p1).await.unwrap().is_none());
    let job = tx.job(a, j1).await.unwrap().expect("A's job");
    assert_eq!(job.project_id, p1);
    assert!(tx.job(b, j1).await.unwrap().is_none());
    assert_eq!(tx.containers_of_job(a, j1).await.unwrap().len(), 1);
    assert_eq!(tx.list_posts(a, p1, strata_core::cursor::PageRequest { limit: 10, before_seq: None }).await.unwrap().len(), 1);
    // B may now use A's project id; a new row comes after the old ones.
    let mut twin = alpha.clone();
    twin.org_id = b;
    twin.name = "Beta's twin".into();
    tx.insert_project(&twin).await.unwrap();
    assert_eq!(tx.project(b, p1).await.unwrap().expect("B's twin").seq, 3);
    assert_eq!(tx.project(a, p1).await.unwrap().unwrap().name, "Alpha one");
    // Moving A's project into C takes its job along (the reference cascades), and
    // `move_project_rows` the rest; B's twin stays.
    let mut moved = alpha.clone();
    moved.org_id = c;
    tx.update_project(&moved).await.unwrap();
    tx.move_project_rows(p1, a, c).await.unwrap();
    assert!(tx.job(a, j1).await.unwrap().is_none());
    assert_eq!(tx.job(c, j1).await.unwrap().expect("moved with its project").org_id, c);
    assert_eq!(tx.containers_of_job(c, j1).await.unwrap().len(), 1);
    assert_eq!(tx.pending_posts(c, Some(p1)).await.unwrap().len(), 1);
    assert_eq!(tx.project(b, p1).await.unwrap().unwrap().name, "Beta's twin");
    tx.commit().await.unwrap();

    // Refused: a second project with the same id in one org, and a job whose project is
    // another org's.
    let mut tx = store.write().await.unwrap();
    assert!(tx.insert_project(&twin).await.is_err(), "a project id is unique within its org");
    drop(tx);
    let mut tx = store.write().await.unwrap();
    let mut stray = job.clone();
    stray.id = JobId::at(99);
    stray.org_id = a;
    stray.project_id = p2;
    assert!(tx.insert_job(&stray).await.is_err(), "a job's project is one of its own org's");
    drop(tx);
    let mut tx = store.write().await.unwrap();
    let mut twin_job = job.clone();
    twin_job.org_id = b;
    twin_job.project_id = p1;
    tx.insert_job(&twin_job).await.expect("B may use A's job id for a job of its own project");
    tx.commit().await.unwrap();
}
