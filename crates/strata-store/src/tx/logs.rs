//! The append-mostly logs: idempotency claims, the audit log and the event log, which is also
//! the webhooks' outbox (`IdempotencyRows`, `AuditRows`, `EventRows`).

use async_trait::async_trait;
use strata_core::audit::{AuditEntry, AuditFilter};
use strata_core::clock::Timestamp;
use strata_core::cursor::PageRequest;
use strata_core::error::Result;
use strata_core::event::{Event, EventFilter};
use strata_core::id::{ApiKeyId, EventId, OrgId};
use strata_core::idempotency::{IdemRecord, Reply};

use crate::deferred::Claim;
use crate::notify;
use crate::query::{Q, ROWS_PER_INSERT, values_placeholders};
use crate::rows::{self, AUDIT_COLUMNS, EVENT_COLUMNS};
use strata_core::store::{AuditRows, EventRows, IdempotencyRows};

use super::SqlTx;
use crate::query::page;

#[async_trait]
impl IdempotencyRows for SqlTx {
    async fn idem_get(&mut self, key_id: ApiKeyId, key: &str) -> Result<Option<IdemRecord>> {
        let sql = format!(
            "SELECT api_key_id, idem_key, fingerprint, status, body, created_at, lease_until FROM idempotency_records WHERE api_key_id = $1 AND idem_key = $2{}",
            self.lock()
        );
        let row = Q::new(&sql).str(&key_id.uuid_string()).str(key).fetch_optional(&mut self.conn).await?;
        row.map(|r| rows::idem(&r)).transpose()
    }

    async fn idem_insert(&mut self, rec: &IdemRecord) -> Result<bool> {
        let n = Q::new(
            "INSERT INTO idempotency_records (api_key_id, idem_key, fingerprint, status, body, created_at, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (api_key_id, idem_key) DO NOTHING",
        )
        .str(&rec.api_key_id.uuid_string())
        .str(&rec.key)
        .str(&rec.fingerprint)
        .opt_int(rec.reply.as_ref().map(|r| i64::from(r.status)))
        .opt_str(rec.reply.as_ref().map(|r| String::from_utf8_lossy(&r.body).into_owned()))
        .int(rec.created_at.millis())
        .int(rec.lease_until.millis())
        .execute(&mut self.conn)
        .await?;
        Ok(n == 1)
    }

    async fn idem_renew(&mut self, key_id: ApiKeyId, key: &str, created_at: Timestamp, lease_until: Timestamp) -> Result<()> {
        Q::new("UPDATE idempotency_records SET created_at = $3, lease_until = $4 WHERE api_key_id = $1 AND idem_key = $2")
            .str(&key_id.uuid_string())
            .str(key)
            .int(created_at.millis())
            .int(lease_until.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn idem_complete(&mut self, key_id: ApiKeyId, key: &str, token: Timestamp, reply: &Reply) -> Result<u64> {
        let claim = Claim {
            key_id: key_id.uuid_string(),
            key: key.to_owned(),
            token: token.millis(),
            status: i64::from(reply.status),
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        };
        self.conn.later_claim(claim).await
    }

    async fn idem_delete(&mut self, key_id: ApiKeyId, key: &str, token: Timestamp) -> Result<()> {
        Q::new("DELETE FROM idempotency_records WHERE api_key_id = $1 AND idem_key = $2 AND created_at = $3 AND status IS NULL")
            .str(&key_id.uuid_string())
            .str(key)
            .int(token.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn idem_prune(&mut self, created_before: Timestamp) -> Result<u64> {
        let sql = format!(
            "DELETE FROM idempotency_records WHERE (api_key_id, idem_key) IN \
             (SELECT api_key_id, idem_key FROM idempotency_records WHERE created_at < $1{})",
            self.lock_free_rows()
        );
        Q::new(&sql).int(created_before.millis()).execute(&mut self.conn).await
    }
}

#[async_trait]
impl AuditRows for SqlTx {
    async fn insert_audits(&mut self, entries: &[AuditEntry]) -> Result<()> {
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut q = Q::new(&format!(
                "INSERT INTO audit_log (id, event_type, occurred_at, request_id, org_id, project_id, api_key_id, actor, data) VALUES {}",
                values_placeholders(chunk.len(), 9)
            ));
            for a in chunk {
                q = q
                    .str(&a.id.to_string())
                    .str(&a.event_type)
                    .int(a.occurred_at.millis())
                    .opt_str(a.request_id.map(|r| r.to_string()))
                    .opt_str(a.org_id.map(|o| o.uuid_string()))
                    .opt_str(a.project_id.map(|p| p.uuid_string()))
                    .opt_str(a.api_key_id.map(|k| k.uuid_string()))
                    .str(a.actor.as_str())
                    .str(&a.data.to_string());
            }
            self.conn.later(q).await?;
        }
        Ok(())
    }

    async fn list_audit(&mut self, org: OrgId, f: &AuditFilter, req: PageRequest) -> Result<Vec<AuditEntry>> {
        let mut q = Q::new(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1")).str(&org.uuid_string());
        q = q.and_any_of("event_type", &f.event_types);
        if let Some(p) = f.project_id {
            q = q.and_str(" AND project_id = $?", &p.uuid_string());
        }
        if let Some(k) = f.api_key_id {
            q = q.and_str(" AND api_key_id = $?", &k.uuid_string());
        }
        if let Some(s) = f.since {
            q = q.and_int(" AND occurred_at >= $?", s.millis());
        }
        if let Some(u) = f.until {
            q = q.and_int(" AND occurred_at < $?", u.millis());
        }
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::audit).collect()
    }
}

#[async_trait]
impl EventRows for SqlTx {
    async fn insert_event(&mut self, e: &Event) -> Result<()> {
        self.signal_on_commit(notify::EVENTS);
        let q = Q::new("INSERT INTO events (id, event_type, org_id, project_id, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .str(&e.id.to_string())
            .str(e.event_type.as_str())
            .str(&e.org_id.uuid_string())
            .opt_str(e.project_id.map(|p| p.uuid_string()))
            .str(&e.data.to_string())
            .int(e.created_at.millis());
        self.conn.later(q).await
    }

    async fn list_events(&mut self, org: OrgId, f: &EventFilter, req: PageRequest) -> Result<Vec<Event>> {
        let mut q = Q::new(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1")).str(&org.uuid_string());
        q = q.and_any_of("event_type", f.event_types.iter().map(|t| t.as_str()));
        if let Some(s) = f.since {
            q = q.and_int(" AND created_at >= $?", s.millis());
        }
        if let Some(u) = f.until {
            q = q.and_int(" AND created_at < $?", u.millis());
        }
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::event).collect()
    }

    async fn event(&mut self, org: OrgId, id: EventId) -> Result<Option<Event>> {
        let row = Q::new(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND org_id = $2"))
            .str(&id.to_string())
            .str(&org.uuid_string())
            .fetch_optional(&mut self.conn)
            .await?;
        row.map(|r| rows::event(&r)).transpose()
    }

    async fn undispatched_events(&mut self, limit: u32) -> Result<Vec<Event>> {
        let rows = Q::new(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE dispatched = 0 ORDER BY seq LIMIT $1"))
            .int(i64::from(limit))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(rows::event).collect()
    }

    async fn max_event_seq(&mut self) -> Result<i64> {
        let row = Q::new("SELECT COALESCE(MAX(seq), 0) AS n FROM events").fetch_optional(&mut self.conn).await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0))
    }

    async fn mark_dispatched(&mut self, ids: &[EventId]) -> Result<Vec<EventId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        // Events another node's dispatcher is marking are skipped, not waited for: that node
        // dispatches them (or, if it rolls back, the next step does).
        let rows = Q::new("UPDATE events SET dispatched = 1 WHERE id IN (SELECT id FROM events WHERE dispatched = 0 AND id IN (")
            .list(&ids)
            .push(&format!("){}) RETURNING id", self.lock_free_rows()))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| EventId::from_stored(&r.text("id")?)).collect()
    }

    async fn purge_events(&mut self, before: Timestamp, limit: u32) -> Result<u64> {
        Q::new(&format!(
            "DELETE FROM events WHERE seq IN (SELECT ev.seq FROM events ev WHERE ev.dispatched = 1 AND ev.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ev.id AND d.status IN ('pending', 'delivering')) \
             ORDER BY ev.created_at LIMIT $2{})",
            self.lock_free_rows()
        ))
        .int(before.millis())
        .int(i64::from(limit))
        .execute(&mut self.conn)
        .await
    }
}
