//! Every row type the store keeps reads back exactly as it was written: one value of each,
//! with every field set to something distinctive (each `Option` is `Some`, numbers are non-zero
//! and different from one another, each timestamp has its own millisecond value, JSON is
//! non-empty), is inserted through the `Tx` port, committed, and read back in a new
//! transaction through the port's reads; the value read must equal the value written, field by
//! field, but for what the database assigns (`seq`, and a ledger entry's balances after). So a
//! binder and its decoder that disagree on a column's place (two binds swapped, a column
//! dropped or read from the wrong name) fail here. The reads that join an org with its wallet
//! and key through column lists of their own (the child summary, the auth lookup) are checked
//! too. Runs on SQLite, and on PostgreSQL too (in a scratch database, dropped at the end) when
//! `STRATA_TEST_DATABASE_URL` is set.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::json;
use strata_core::apikey::{Env, Tier};
use strata_core::audit::{Actor, AuditEntry, AuditFilter};
use strata_core::clock::Timestamp;
use strata_core::content::{Container, ContainerStatus, Job, JobStatus, Outcome};
use strata_core::credits::{Account, CreditConfig, CreditEvent, CreditEventFilter, Transfer, TransferKind, TransferStatus, Wallet};
use strata_core::cursor::PageRequest;
use strata_core::event::{Event, EventType};
use strata_core::id::{ApiKeyId, AuditId, ContainerId, DeliveryId, EndpointId, EventId, JobId, OrgId, PostId, ProjectId, RequestId, TxnId};
use strata_core::idempotency::{IdemRecord, Reply};
use strata_core::key::{ApiKey, KeyStatus};
use strata_core::ledger::{LedgerBatch, Posting};
use strata_core::metadata::Metadata;
use strata_core::org::{Org, OrgStatus};
use strata_core::post::{PostStatus, ScheduledPost};
use strata_core::project::{Project, ProjectStatus};
use strata_core::scope::{Scope, Scopes};
use strata_core::store::{Owner, Store};
use strata_core::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, EndpointScope, EndpointStatus};

use crate::{Backend, SqlStore, create_scratch_postgres, drop_scratch_postgres};

/// Hands out timestamps, each one 1 009 ms after the last, so no two fields share one and each
/// has its own millisecond part: a timestamp read from another timestamp's column shows.
struct Stamps(AtomicI64);

impl Stamps {
    fn new() -> Self {
        Self(AtomicI64::new(1_780_000_000_123))
    }

    fn t(&self) -> Timestamp {
        Timestamp(self.0.fetch_add(1_009, Ordering::Relaxed))
    }
}

const PAGE: PageRequest = PageRequest { limit: 10, before_seq: None };

/// `read` is `written`, compared through their `Debug` forms (which name every field of these
/// types; most derive no `PartialEq`).
#[track_caller]
fn same<T: Debug>(what: &str, written: &T, read: &T) {
    same_text(what, &format!("{written:#?}"), &format!("{read:#?}"));
}

/// Fails naming the lines (fields) that differ, then both values in full.
#[track_caller]
fn same_text(what: &str, written: &str, read: &str) {
    if written != read {
        // Each differing line with the field it is in (the last line at a field's depth).
        let mut field = "";
        let mut differ = Vec::new();
        for (w, r) in written.lines().zip(read.lines()) {
            if (w.starts_with("    ") && !w.starts_with("     ")) || !w.starts_with(' ') {
                field = w.trim();
            }
            if w != r {
                differ.push(format!("  in {field}\n    written: {}\n    read:    {}", w.trim(), r.trim()));
            }
        }
        panic!("{what} does not read back as written:\n{}\n--- written:\n{written}\n--- read:\n{read}", differ.join("\n"));
    }
}

/// Every field of a key: its `Debug` leaves most of them out (the secret's hash above all). The
/// destructuring names each field, so a field added to `ApiKey` must be added here.
fn key_fields(k: &ApiKey) -> String {
    let ApiKey {
        id,
        org_id,
        name,
        env,
        keyid,
        secret_hash,
        scopes,
        tier,
        status,
        killed,
        created_at,
        last_used_at,
        rotated_at,
        revoked_at,
        grace_until,
        superseded_by,
        seq,
    } = k;
    format!(
        "id: {id:?}\norg_id: {org_id:?}\nname: {name:?}\nenv: {env:?}\nkeyid: {keyid:?}\nsecret_hash: {secret_hash:?}\n\
         scopes: {scopes:?}\ntier: {tier:?}\nstatus: {status:?}\nkilled: {killed:?}\ncreated_at: {created_at:?}\n\
         last_used_at: {last_used_at:?}\nrotated_at: {rotated_at:?}\nrevoked_at: {revoked_at:?}\ngrace_until: {grace_until:?}\n\
         superseded_by: {superseded_by:?}\nseq: {seq:?}"
    )
}

/// Inserts one value of each row type through the port, commits, and reads each back in a new
/// transaction, comparing field by field.
async fn every_row_type_reads_back_as_written(store: &dyn Store) {
    let s = Stamps::new();

    // ----- what is written -----
    let parent = Org {
        id: OrgId::new(),
        parent_id: None,
        name: "Round Trip Partner".into(),
        status: OrgStatus::Active,
        metadata: Metadata::from_stored(r#"{"tier":"gold"}"#),
        billing_email: Some("billing@partner.example".into()),
        access_revoked: false,
        archived_at: None,
        archive_stats: None,
        created_at: s.t(),
        updated_at: s.t(),
        seq: 0,
    };
    let org = Org {
        id: OrgId::new(),
        parent_id: Some(parent.id),
        name: "Round Trip Child".into(),
        status: OrgStatus::Archived,
        metadata: Metadata::from_stored(r#"{"externalId":"cust-4711","region":"eu-west"}"#),
        billing_email: Some("child@partner.example".into()),
        access_revoked: true,
        archived_at: Some(s.t()),
        archive_stats: Some((1_201, 1_303)),
        created_at: s.t(),
        updated_at: s.t(),
        seq: 0,
    };
    let key = ApiKey {
        id: ApiKeyId::new(),
        org_id: org.id,
        name: "round trip key".into(),
        env: Env::Test,
        keyid: "7K3Q9ZC1M4XW2B8N".into(),
        secret_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        scopes: Scopes::new([Scope::ProjectsRead, Scope::ContentWrite, Scope::AuditRead]),
        tier: Tier::Partner,
        status: KeyStatus::Revoked,
        killed: true,
        created_at: s.t(),
        last_used_at: Some(s.t()),
        rotated_at: Some(s.t()),
        revoked_at: Some(s.t()),
        grace_until: Some(s.t()),
        superseded_by: Some(ApiKeyId::new()),
        seq: 0,
    };
    let project = Project {
        id: ProjectId::new(),
        org_id: org.id,
        name: "Round Trip Project".into(),
        status: ProjectStatus::Archived,
        customer_external_id: Some("crm-0042".into()),
        timezone: "Europe/Berlin".into(),
        primary_language: "de".into(),
        owner_email: Some("owner@child.example".into()),
        metadata: json!({ "campaign": "spring", "budget": 17 }),
        created_at: s.t(),
        updated_at: s.t(),
        archived_at: Some(s.t()),
        seq: 0,
    };
    let reservation_id = TxnId::new();
    let container_id = ContainerId::at(s.t().millis());
    let job = Job {
        id: JobId::at(s.t().millis()),
        org_id: org.id,
        project_id: project.id,
        api_key_id: key.id,
        status: JobStatus::Completed,
        format: "slideshow_remix".into(),
        variant_count: 3,
        brief: json!({ "prompt": "a cat on a skateboard", "tone": "playful" }),
        reservation_id: Some(reservation_id),
        reserved: 450,
        outcome: Outcome::Complete { actual_cost: 390 },
        test_mode: true,
        container_ids: vec![container_id, ContainerId::at(s.t().millis())],
        started_at: s.t(),
        finish_at: s.t(),
        finished_at: Some(s.t()),
        error: Some("two of three variants were re-rendered".into()),
    };
    // The other outcome: a job stores either a cost or a failure reason, never both.
    let failed_job = Job {
        id: JobId::at(s.t().millis()),
        status: JobStatus::Failed,
        format: "ugc_remix".into(),
        variant_count: 2,
        brief: json!({ "prompt": "unboxing" }),
        reservation_id: Some(TxnId::new()),
        reserved: 275,
        outcome: Outcome::Fail { reason: "engine_rejected".into() },
        test_mode: false,
        container_ids: vec![ContainerId::at(s.t().millis())],
        started_at: s.t(),
        finish_at: s.t(),
        finished_at: Some(s.t()),
        error: Some("the engine refused the brief".into()),
        ..job.clone()
    };
    let container = Container {
        id: container_id,
        job_id: job.id,
        org_id: org.id,
        project_id: project.id,
        format: "slideshow_remix".into(),
        status: ContainerStatus::Processing,
        assets: json!([{ "kind": "video", "url": "https://cdn.example/v1.mp4" }]),
        created_at: s.t(),
    };
    let post = ScheduledPost {
        id: PostId::at(s.t().millis()),
        org_id: org.id,
        project_id: project.id,
        container_id: container.id,
        platform: "instagram".into(),
        scheduled_for: s.t(),
        status: PostStatus::Published,
        published_at: Some(s.t()),
        canceled_at: Some(s.t()),
        created_at: s.t(),
        updated_at: s.t(),
        seq: 0,
    };
    let endpoint = Endpoint {
        id: EndpointId::at(s.t().millis()),
        org_id: org.id,
        project_id: Some(project.id),
        url: "https://hooks.child.example/strata".into(),
        description: Some("the child's firehose".into()),
        status: EndpointStatus::AutoPaused,
        events: vec![EventType::PostPublished, EventType::JobFailed, EventType::CreditsLow],
        scope: EndpointScope::AllChildren,
        metadata: Metadata::from_stored(r#"{"team":"growth"}"#),
        secret_sealed: "sealed:v1:current-secret".into(),
        previous_secret_sealed: Some("sealed:v1:previous-secret".into()),
        previous_expires_at: Some(s.t()),
        created_at: s.t(),
        updated_at: s.t(),
        last_success_at: Some(s.t()),
        last_failure_at: Some(s.t()),
        consecutive_failures: 19,
        start_seq: 23,
        seq: 0,
    };
    let event = Event {
        id: EventId::at(s.t().millis()),
        event_type: EventType::PostPublished,
        org_id: org.id,
        project_id: Some(project.id),
        data: json!({ "postId": post.id.to_string(), "platform": "instagram" }),
        created_at: s.t(),
        seq: 0,
    };
    let delivery = Delivery {
        id: DeliveryId::at(s.t().millis()),
        endpoint_id: endpoint.id,
        event_org_id: org.id,
        event_id: event.id,
        event_type: event.event_type,
        body: r#"{"type":"post.published","data":{"platform":"instagram"}}"#.into(),
        status: DeliveryStatus::Failed,
        attempts: 7,
        next_retry_at: Some(s.t()),
        delivered_at: Some(s.t()),
        abandoned_at: Some(s.t()),
        last_response_status: Some(503),
        last_response_at: Some(s.t()),
        last_error: Some("upstream unavailable".into()),
        replay_of: Some(DeliveryId::at(s.t().millis())),
        created_at: s.t(),
        seq: 0,
    };
    let attempt = DeliveryAttempt {
        delivery_id: delivery.id,
        attempted_at: s.t(),
        duration_ms: 1_234,
        response_status: Some(502),
        error: Some("bad gateway".into()),
        response_body_excerpt: Some("<html>502</html>".into()),
        seq: 0,
    };
    let audit = AuditEntry {
        id: AuditId::at(s.t().millis()),
        event_type: "project.archived".into(),
        occurred_at: s.t(),
        request_id: Some(RequestId::at(s.t().millis())),
        org_id: Some(org.id),
        project_id: Some(project.id),
        api_key_id: Some(key.id),
        actor: Actor::Operator,
        data: json!({ "reason": "season over", "by": "ops" }),
        seq: 0,
    };
    let idem = IdemRecord {
        api_key_id: key.id,
        key: "round-trip-idem-key".into(),
        fingerprint: "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b".into(),
        reply: Some(Reply { status: 201, body: br#"{"id":"prj_round_trip"}"#.to_vec() }),
        created_at: s.t(),
        lease_until: s.t(),
    };
    // The child's wallet reads back as inserted; the parent's is moved by the ledger batch.
    let wallet = Wallet {
        org_id: org.id,
        included_remaining: 1_101,
        prepaid_balance: 2_203,
        reserved: 307,
        used_this_period: 409,
        included_this_period: 511,
        period_start: s.t(),
        config: CreditConfig { monthly_credit_cap: Some(6_113), refill_threshold: Some(7_127), refill_amount: Some(8_131) },
        updated_at: s.t(),
        included_carryover: 97,
    };
    let parent_wallet = Wallet {
        org_id: parent.id,
        included_remaining: 10_007,
        prepaid_balance: 20_011,
        reserved: 3_001,
        used_this_period: 4_003,
        included_this_period: 5_009,
        period_start: s.t(),
        config: CreditConfig { monthly_credit_cap: Some(60_013), refill_threshold: Some(70_019), refill_amount: Some(80_021) },
        updated_at: s.t(),
        included_carryover: 61,
    };
    // A grant (posted), a reservation (pending) and a usage (posted) of the parent, each with
    // every column set.
    let transfer = |debit, credit, amount, kind, status, meta| Transfer {
        id: TxnId::new(),
        org_id: parent.id,
        debit,
        credit,
        amount,
        kind,
        status,
        pending_id: Some(TxnId::new()),
        expires_at: Some(s.t()),
        metadata: meta,
        created_at: s.t(),
    };
    let transfers = [
        transfer(
            Account::Grants,
            Account::Prepaid(parent.id),
            1_234,
            TransferKind::Grant,
            TransferStatus::Posted,
            json!({ "note": "welcome grant" }),
        ),
        Transfer {
            id: reservation_id,
            ..transfer(
                Account::Wallet(parent.id),
                Account::Usage,
                567,
                TransferKind::Reservation,
                TransferStatus::Pending,
                json!({ "jobId": job.id.to_string() }),
            )
        },
        transfer(
            Account::Prepaid(parent.id),
            Account::Usage,
            89,
            TransferKind::Usage,
            TransferStatus::Posted,
            json!({ "format": "slideshow_remix" }),
        ),
    ];
    let entry = |org_id, credits, event_type, tag: &str| CreditEvent {
        // As the services make them: `cev_` and a ULID of the time.
        id: format!("cev_{}", EventId::at(s.t().millis()).0),
        org_id,
        project_id: Some(project.id),
        credits,
        event_type,
        format: Some(format!("format-{tag}")),
        container_id: Some(format!("container-{tag}")),
        workflow_id: Some(format!("workflow-{tag}")),
        balance_after_prepaid: 0,
        usage_after_period: 0,
        metadata: json!({ "entry": tag }),
        created_at: s.t(),
        seq: 0,
    };
    // One entry of the moved wallet (the parent's), one of a wallet the batch leaves alone
    // (stamped with its balances as they are): on PostgreSQL each is written by its own statement.
    let entries = vec![entry(parent.id, -89, "usage", "moved"), entry(org.id, 131, "grant", "unmoved")];
    let at = s.t();
    let batch = LedgerBatch::new(transfers.iter().cloned().map(Posting::Transfer).collect(), entries.clone(), at).unwrap();
    assert_eq!(batch.changes.len(), 1, "the batch moves the parent's wallet only");
    let setting = ("round_trip.setting", "value-7f3a");

    // ----- written, in foreign-key order -----
    let mut tx = store.write().await.unwrap();
    tx.insert_org(&parent).await.unwrap();
    tx.insert_org(&org).await.unwrap();
    tx.insert_wallet(&parent_wallet).await.unwrap();
    tx.insert_wallet(&wallet).await.unwrap();
    tx.insert_key(&key).await.unwrap();
    assert!(tx.idem_insert(&idem).await.unwrap(), "the idempotency record is new");
    tx.insert_project(&project).await.unwrap();
    tx.insert_job(&job).await.unwrap();
    tx.insert_job(&failed_job).await.unwrap();
    tx.insert_container(&container).await.unwrap();
    tx.insert_post(&post).await.unwrap();
    tx.insert_endpoint(&endpoint).await.unwrap();
    tx.insert_event(&event).await.unwrap();
    tx.insert_deliveries(std::slice::from_ref(&delivery)).await.unwrap();
    tx.insert_attempts(std::slice::from_ref(&attempt)).await.unwrap();
    tx.insert_audits(std::slice::from_ref(&audit)).await.unwrap();
    let moved = tx.post_transfers(&batch).await.unwrap().expect("the ledger batch is within bounds");
    assert_eq!(tx.setting_init(setting.0, setting.1).await.unwrap(), setting.1);
    tx.commit().await.unwrap();

    // ----- read back in a new transaction -----
    let mut tx = store.read().await.unwrap();

    let read = tx.org(Owner::System, parent.id).await.unwrap().expect("the parent org");
    assert!(read.seq > 0);
    same("the parent org", &Org { seq: read.seq, ..parent.clone() }, &read);
    let read = tx.org(Owner::Org(parent.id), org.id).await.unwrap().expect("the child org");
    assert!(read.seq > 0);
    same("the org", &Org { seq: read.seq, ..org.clone() }, &read);
    // From here on the joins below must bring the same `seq` as this read.
    let org = Org { seq: read.seq, ..org };

    let mut key_seqs = Vec::new();
    for (how, read) in [
        ("by id", tx.key(Owner::Org(org.id), key.id).await.unwrap().expect("the key by id")),
        ("by keyid", tx.key_by_keyid(&key.keyid).await.unwrap().expect("the key by keyid")),
    ] {
        assert!(read.seq > 0);
        let written = ApiKey { seq: read.seq, ..key.clone() };
        assert_eq!(read.secret_hash, written.secret_hash, "the key's secret hash (read {how})");
        same_text(&format!("the key (read {how})"), &key_fields(&written), &key_fields(&read));
        key_seqs.push(read.seq);
    }
    assert_eq!(key_seqs[0], key_seqs[1], "the key's seq, read by id and by keyid");
    let key = ApiKey { seq: key_seqs[0], ..key };

    let read = tx.idem_get(idem.api_key_id, &idem.key).await.unwrap().expect("the idempotency record");
    same("the idempotency record", &idem, &read);

    let read = tx.list_audit(org.id, &AuditFilter::default(), PAGE).await.unwrap();
    assert_eq!(read.len(), 1, "{read:#?}");
    assert!(read[0].seq > 0);
    same("the audit entry", &AuditEntry { seq: read[0].seq, ..audit.clone() }, &read[0]);

    let read = tx.event(org.id, event.id).await.unwrap().expect("the event");
    assert!(read.seq > 0);
    same("the event", &Event { seq: read.seq, ..event.clone() }, &read);

    same("the wallet", &wallet, &tx.wallet(org.id).await.unwrap().expect("the wallet"));
    // The parent's wallet as inserted, moved by the batch (its balances, and `updated_at` to the
    // batch's time).
    let mut expected = parent_wallet.clone();
    expected.apply(&batch.changes[0], at).unwrap();
    assert_ne!(expected, parent_wallet);
    assert_eq!(moved, vec![expected.clone()], "the wallets post_transfers returns");
    same("the moved wallet", &expected, &tx.wallet(parent.id).await.unwrap().expect("the parent's wallet"));

    for t in &transfers {
        let read = tx.transfer(Owner::Org(parent.id), t.id).await.unwrap().expect("the transfer");
        same(&format!("the {} transfer", t.kind.as_str()), t, &read);
    }

    // Each entry stamped with its wallet's balances after the batch.
    for (e, after) in entries.iter().zip([&expected, &wallet]) {
        let read = tx.list_credit_events(e.org_id, &CreditEventFilter::default(), PAGE).await.unwrap();
        assert_eq!(read.len(), 1, "{read:#?}");
        assert!(read[0].seq > 0);
        let written = CreditEvent {
            seq: read[0].seq,
            balance_after_prepaid: after.prepaid_balance,
            usage_after_period: after.used_this_period,
            ..e.clone()
        };
        same(&format!("the ledger entry of {}", e.org_id), &written, &read[0]);
    }

    let read = tx.project(org.id, project.id).await.unwrap().expect("the project");
    assert!(read.seq > 0);
    same("the project", &Project { seq: read.seq, ..project.clone() }, &read);

    for j in [&job, &failed_job] {
        let read = tx.job(org.id, j.id).await.unwrap().expect("the job");
        same(&format!("the {} job", j.status.as_str()), j, &read);
    }

    let read = tx.container(Owner::Org(org.id), container.id).await.unwrap().expect("the container");
    same("the container", &container, &read);

    let read = tx.post(Owner::Org(org.id), post.id).await.unwrap().expect("the post");
    assert!(read.seq > 0);
    same("the post", &ScheduledPost { seq: read.seq, ..post.clone() }, &read);

    let read = tx.endpoint(endpoint.id).await.unwrap().expect("the endpoint");
    assert!(read.seq > 0);
    same("the endpoint", &Endpoint { seq: read.seq, ..endpoint.clone() }, &read);

    let read = tx.delivery(delivery.id).await.unwrap().expect("the delivery");
    assert!(read.seq > 0);
    same("the delivery", &Delivery { seq: read.seq, ..delivery.clone() }, &read);

    let read = tx.list_attempts(delivery.id, 10).await.unwrap();
    assert_eq!(read.len(), 1, "{read:#?}");
    assert!(read[0].seq > 0);
    same("the delivery attempt", &DeliveryAttempt { seq: read[0].seq, ..attempt.clone() }, &read[0]);

    assert_eq!(tx.setting(setting.0).await.unwrap().as_deref(), Some(setting.1), "the setting");

    // The reads that join an org with its wallet (and a key) through their own column lists.
    let (summary_org, summary_wallet, projects) = tx.child_summary(parent.id, org.id).await.unwrap().expect("the child's summary");
    same("the org in the child's summary", &org, &summary_org);
    same("the wallet in the child's summary", &wallet, &summary_wallet);
    assert_eq!(projects, 1);
    tx.commit().await.unwrap();
    let (summary_org, summary_wallet, projects) =
        store.current_child_summary(parent.id, org.id).await.unwrap().expect("the child's current summary");
    same("the org in the child's current summary", &org, &summary_org);
    same("the wallet in the child's current summary", &wallet, &summary_wallet);
    assert_eq!(projects, 1);
    same("the current wallet", &wallet, &store.current_wallet(org.id).await.unwrap().expect("the current wallet"));
    // The first lookup of a keyid reads the database (a cached one brings no wallet).
    let (read_key, home, home_wallet) = store.auth_lookup(&key.keyid).await.unwrap().expect("the key's auth lookup");
    same_text("the key of the auth lookup", &key_fields(&key), &key_fields(&read_key));
    same("the org of the auth lookup", &org, &home);
    same("the wallet of the auth lookup", &wallet, &home_wallet.expect("a first lookup reads the wallet"));
}

#[tokio::test]
async fn every_row_type_reads_back_as_written_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&Backend::Sqlite { dir: dir.path().to_owned() }).await.unwrap();
    every_row_type_reads_back_as_written(&store).await;
}

#[tokio::test]
async fn every_row_type_reads_back_as_written_on_postgres() {
    let base = match std::env::var("STRATA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        // No PostgreSQL to test against: passes without running (the SQLite test still runs).
        _ => return,
    };
    let url = create_scratch_postgres(&base, "strata_t_round_trip").await.unwrap();
    // Run in a task of its own, so the scratch database is dropped even when an assertion fails
    // (the store is dropped with the task, closing its pools), and the failure reported after.
    let run = tokio::spawn({
        let url = url.clone();
        async move {
            let store = SqlStore::connect(&Backend::Postgres { url }).await.unwrap();
            every_row_type_reads_back_as_written(&store).await;
        }
    })
    .await;
    let dropped = drop_scratch_postgres(&base, &url).await;
    if let Err(e) = run {
        std::panic::resume_unwind(e.into_panic());
    }
    dropped.unwrap();
}
