//! Webhook endpoints, deliveries and delivery attempts (`WebhookRows`).

use async_trait::async_trait;
use strata_core::clock::Timestamp;
use strata_core::cursor::PageRequest;
use strata_core::error::Result;
use strata_core::event::EventType;
use strata_core::id::{DeliveryId, EndpointId, OrgId, ProjectId};
use strata_core::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, EndpointStatus};

use crate::notify;
use crate::query::{Q, ROWS_PER_INSERT, values_placeholders};
use crate::rows::{self, ATTEMPT_COLUMNS, DELIVERY_COLUMNS, ENDPOINT_COLUMNS};
use strata_core::store::WebhookRows;

use super::{SqlTx, ts};
use crate::query::page;

/// Binds a delivery's outcome columns: next_retry_at, delivered_at, abandoned_at,
/// last_response_status, last_response_at, last_error.
fn outcome_args(q: Q, d: &Delivery) -> Q {
    q.opt_int(ts(d.next_retry_at))
        .opt_int(ts(d.delivered_at))
        .opt_int(ts(d.abandoned_at))
        .opt_int(d.last_response_status)
        .opt_int(ts(d.last_response_at))
        .opt_str(d.last_error.clone())
}

/// Binds every column of an endpoint but `seq`, in `ENDPOINT_COLUMNS` order.
fn endpoint_args(q: Q, e: &Endpoint) -> Q {
    let events: Vec<&str> = e.events.iter().map(|t| t.as_str()).collect();
    q.str(&e.id.to_string())
        .str(&e.org_id.uuid_string())
        .opt_str(e.project_id.map(|p| p.uuid_string()))
        .str(&e.url)
        .opt_str(e.description.clone())
        .str(e.status.as_str())
        .str(&serde_json::Value::from(events).to_string())
        .str(e.scope.as_str())
        .str(&e.metadata.to_stored())
        .str(&e.secret_sealed)
        .opt_str(e.previous_secret_sealed.clone())
        .opt_int(ts(e.previous_expires_at))
        .int(e.created_at.millis())
        .int(e.updated_at.millis())
        .opt_int(ts(e.last_success_at))
        .opt_int(ts(e.last_failure_at))
        .int(e.consecutive_failures)
        .int(e.start_seq)
}

#[async_trait]
impl WebhookRows for SqlTx {
    async fn insert_endpoint(&mut self, e: &Endpoint) -> Result<()> {
        let q = Q::new(&format!(
            "INSERT INTO webhook_endpoints ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            &ENDPOINT_COLUMNS["seq, ".len()..]
        ));
        endpoint_args(q, e).execute(&mut self.conn).await.map(|_| ())
    }

    async fn update_endpoint(&mut self, e: &Endpoint) -> Result<()> {
        let q = Q::new(
            "UPDATE webhook_endpoints SET org_id = $2, project_id = $3, url = $4, description = $5, status = $6, events = $7, scope = $8, \
             metadata = $9, secret_sealed = $10, previous_secret = $11, previous_expires_at = $12, created_at = $13, updated_at = $14, \
             last_success_at = $15, last_failure_at = $16, consecutive_failures = $17, start_seq = $18 WHERE id = $1",
        );
        endpoint_args(q, e).execute(&mut self.conn).await.map(|_| ())
    }

    async fn delete_endpoint(&mut self, id: EndpointId) -> Result<()> {
        Q::new("DELETE FROM webhook_endpoints WHERE id = $1").str(&id.to_string()).execute(&mut self.conn).await.map(|_| ())
    }

    async fn endpoint(&mut self, id: EndpointId) -> Result<Option<Endpoint>> {
        self.one(ENDPOINT_COLUMNS, "webhook_endpoints", "id", &id.to_string(), rows::endpoint).await
    }

    async fn list_endpoints(
        &mut self,
        org: OrgId,
        project: Option<ProjectId>,
        statuses: &[EndpointStatus],
        req: PageRequest,
    ) -> Result<Vec<Endpoint>> {
        let mut q = Q::new(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1")).str(&org.uuid_string());
        if let Some(p) = project {
            q = q.and_str(" AND project_id = $?", &p.uuid_string());
        }
        q = q.and_any_of("status", statuses.iter().map(|s| s.as_str()));
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::endpoint).collect()
    }

    async fn endpoints_for_event(&mut self, org: OrgId, parent: Option<OrgId>) -> Result<Vec<Endpoint>> {
        let q = Q::new(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1")).str(&org.uuid_string());
        let q = match parent {
            Some(p) => q.and_str(" OR (org_id = $? AND scope = 'all_children')", &p.uuid_string()),
            None => q,
        };
        let rows = q.push(" ORDER BY seq").fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::endpoint).collect()
    }

    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> Result<()> {
        const COLUMNS: usize = 16;
        // Well under both engines' limit on bound parameters per statement.
        const ROWS_PER_STATEMENT: usize = 500;
        if deliveries.is_empty() {
            return Ok(());
        }
        self.signal_on_commit(notify::DELIVERIES);
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", (1..=COLUMNS).map(|c| format!("${}", i * COLUMNS + c)).collect::<Vec<_>>().join(", ")))
                .collect();
            let mut q =
                Q::new(&format!("INSERT INTO webhook_deliveries ({}) VALUES {}", &DELIVERY_COLUMNS["seq, ".len()..], rows.join(", ")));
            for d in chunk {
                q = q
                    .str(&d.id.to_string())
                    .str(&d.endpoint_id.to_string())
                    .str(&d.event_org_id.uuid_string())
                    .str(&d.event_id.to_string())
                    .str(d.event_type.as_str())
                    .str(&d.body)
                    .str(d.status.as_str())
                    .int(d.attempts);
                q = outcome_args(q, d).opt_str(d.replay_of.map(|r| r.to_string())).int(d.created_at.millis());
            }
            q.execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn delivery(&mut self, id: DeliveryId) -> Result<Option<Delivery>> {
        self.one(DELIVERY_COLUMNS, "webhook_deliveries", "id", &id.to_string(), rows::delivery).await
    }

    async fn list_deliveries(
        &mut self,
        endpoint: EndpointId,
        event_types: &[EventType],
        statuses: &[DeliveryStatus],
        req: PageRequest,
    ) -> Result<Vec<Delivery>> {
        let mut q = Q::new(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1")).str(&endpoint.to_string());
        q = q.and_any_of("event_type", event_types.iter().map(|t| t.as_str()));
        q = q.and_any_of("status", statuses.iter().map(|s| s.as_str()));
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::delivery).collect()
    }

    async fn due_deliveries(&mut self, now: Timestamp, exclude: &[EndpointId], limit: u32) -> Result<Vec<(DeliveryId, EndpointId)>> {
        let mut q = Q::new(
            "SELECT d.id AS id, d.endpoint_id AS endpoint_id FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             JOIN organizations o ON o.id = d.event_org_id \
             WHERE d.status IN ('pending', 'delivering') AND d.next_retry_at <= $1 AND e.status = 'active' \
             AND o.status <> 'suspended' AND o.access_revoked = 0 AND (o.status <> 'archived' OR e.org_id <> d.event_org_id)",
        )
        .int(now.millis());
        for e in exclude {
            q = q.and_str(" AND d.endpoint_id <> $?", &e.to_string());
        }
        let rows = q.and_int(" ORDER BY d.next_retry_at LIMIT $?", i64::from(limit)).fetch_all(&mut self.conn).await?;
        rows.iter().map(|r| Ok((DeliveryId::from_stored(&r.text("id")?)?, EndpointId::from_stored(&r.text("endpoint_id")?)?))).collect()
    }

    async fn claim_deliveries(&mut self, ids: &[DeliveryId], now: Timestamp, lease_until: Timestamp) -> Result<Vec<Delivery>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Locked in id order, like every other write of several deliveries (see abandon_deliveries),
        // skipping rows another transaction holds instead of queueing on them: another node's
        // sender claiming the same due deliveries (they are its to send), or an archive or a
        // replay (the row comes back at the next step if it is still due).
        let lock = if self.lock().is_empty() { "" } else { " FOR UPDATE SKIP LOCKED" };
        let q = Q::new(
            "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1, next_retry_at = $1 WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status IN ('pending', 'delivering') AND next_retry_at <= $2 AND id IN (",
        )
        .int(lease_until.millis())
        .int(now.millis());
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let tail = format!(") ORDER BY id{lock}) RETURNING {DELIVERY_COLUMNS}");
        let rows = q.list(&ids).push(&tail).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::delivery).collect()
    }

    async fn finish_delivery(&mut self, d: &Delivery) -> Result<bool> {
        let q = Q::new(
            "UPDATE webhook_deliveries SET status = $2, next_retry_at = $3, delivered_at = $4, abandoned_at = $5, \
             last_response_status = $6, last_response_at = $7, last_error = $8 \
             WHERE id = $1 AND status = 'delivering' AND attempts = $9",
        )
        .str(&d.id.to_string())
        .str(d.status.as_str());
        let n = outcome_args(q, d).int(d.attempts).execute(&mut self.conn).await?;
        Ok(n == 1)
    }

    async fn release_deliveries(&mut self, claims: &[(DeliveryId, i64)], now: Timestamp) -> Result<u64> {
        let mut released = 0;
        for (id, attempts) in claims {
            released +=
                Q::new("UPDATE webhook_deliveries SET next_retry_at = $1 WHERE id = $2 AND status = 'delivering' AND attempts = $3")
                    .int(now.millis())
                    .str(&id.to_string())
                    .int(*attempts)
                    .execute(&mut self.conn)
                    .await?;
        }
        Ok(released)
    }

    async fn insert_attempts(&mut self, attempts: &[DeliveryAttempt]) -> Result<()> {
        for chunk in attempts.chunks(ROWS_PER_INSERT) {
            let mut q = Q::new(&format!(
                "INSERT INTO webhook_delivery_attempts ({}) VALUES {}",
                &ATTEMPT_COLUMNS["seq, ".len()..],
                values_placeholders(chunk.len(), 6)
            ));
            for a in chunk {
                q = q
                    .str(&a.delivery_id.to_string())
                    .int(a.attempted_at.millis())
                    .int(a.duration_ms)
                    .opt_int(a.response_status)
                    .opt_str(a.error.clone())
                    .opt_str(a.response_body_excerpt.clone());
            }
            q.execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn list_attempts(&mut self, delivery: DeliveryId, limit: u32) -> Result<Vec<DeliveryAttempt>> {
        let rows =
            Q::new(&format!("SELECT {ATTEMPT_COLUMNS} FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY seq DESC LIMIT $2"))
                .str(&delivery.to_string())
                .int(i64::from(limit))
                .fetch_all(&mut self.conn)
                .await?;
        rows.iter().map(rows::attempt).collect()
    }

    async fn requeue_deliveries(&mut self, endpoint: EndpointId, since: Timestamp, now: Timestamp) -> Result<u64> {
        let n = Q::new(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_retry_at = $3, abandoned_at = NULL \
             WHERE endpoint_id = $1 AND created_at >= $2 AND status IN ('failed', 'abandoned') \
             AND event_org_id NOT IN (SELECT id FROM organizations WHERE status = 'archived')",
        )
        .str(&endpoint.to_string())
        .int(since.millis())
        .int(now.millis())
        .execute(&mut self.conn)
        .await?;
        if n > 0 {
            self.signal_on_commit(notify::DELIVERIES);
        }
        Ok(n)
    }

    async fn purge_deliveries(&mut self, before: Timestamp, limit: u32) -> Result<u64> {
        let rows = Q::new(&format!(
            "SELECT id FROM webhook_deliveries WHERE status IN ('delivered', 'failed', 'abandoned') AND created_at < $1 \
             ORDER BY created_at LIMIT $2{}",
            self.lock_free_rows()
        ))
        .int(before.millis())
        .int(i64::from(limit))
        .fetch_all(&mut self.conn)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids = rows.iter().map(|r| r.text("id")).collect::<Result<Vec<_>>>()?;
        for table_column in ["webhook_delivery_attempts WHERE delivery_id", "webhook_deliveries WHERE id"] {
            Q::new(&format!("DELETE FROM {table_column} IN (")).list(&ids).push(")").execute(&mut self.conn).await?;
        }
        Ok(ids.len() as u64)
    }

    async fn abandon_orphaned_deliveries(&mut self, at: Timestamp, limit: u32) -> Result<u64> {
        // Locked in id order, like every other write of several deliveries (see abandon_deliveries).
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'abandoned', abandoned_at = $1, next_retry_at = NULL WHERE id IN \
             (SELECT d.id FROM webhook_deliveries d WHERE d.status = 'pending' \
             AND (NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id) \
             OR EXISTS (SELECT 1 FROM webhook_endpoints e JOIN organizations o ON o.id = e.org_id \
             WHERE e.id = d.endpoint_id AND e.org_id = d.event_org_id AND o.status = 'archived')) \
             ORDER BY d.id LIMIT $2{})",
            self.lock_free_rows()
        );
        Q::new(&sql).int(at.millis()).int(i64::from(limit)).execute(&mut self.conn).await
    }

    async fn abandon_deliveries(&mut self, endpoint: Option<EndpointId>, event_org: Option<OrgId>, at: Timestamp) -> Result<u64> {
        let (column, value) = match (endpoint, event_org) {
            (Some(e), _) => ("endpoint_id", e.to_string()),
            (None, Some(o)) => ("event_org_id", o.uuid_string()),
            (None, None) => return Ok(0),
        };
        // The rows are locked in id order, the order the sender records attempts in: a bulk
        // UPDATE would lock them in table order and deadlock against it on PostgreSQL.
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'abandoned', abandoned_at = $1, next_retry_at = NULL WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status IN ('pending', 'delivering') AND {column} = $2 ORDER BY id{})",
            self.lock()
        );
        Q::new(&sql).int(at.millis()).str(&value).execute(&mut self.conn).await
    }
}
