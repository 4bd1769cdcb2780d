//! The idempotency protocol around a write (CONTRACT §1). A claim is taken in its own short
//! transaction; the write's own transaction completes it with the response; a failure that must
//! not be replayed releases it.

use super::{Caller, Strata};
use crate::error::{CoreError, Result};
use crate::idempotency::{IdemClaim, IdemRecord, RETENTION_MS, Reply};
use crate::telemetry;

/// The outcome of presenting an Idempotency-Key.
#[derive(Debug)]
pub enum Claimed {
    /// First time (or the earlier attempt died): do the work under this claim.
    Proceed(IdemClaim),
    /// Done before: answer with the stored response.
    Replay(Reply),
}

impl Strata {
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn idem_claim(&self, caller: &Caller, key: String, fingerprint: String) -> Result<Claimed> {
        let now = self.now();
        let rec = IdemRecord {
            api_key_id: caller.key.id,
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            reply: None,
            created_at: now,
            lease_until: now.plus_ms(self.config.idempotency_lease_ms),
        };
        // The common case, a key never seen: one relaxed statement.
        if self.store.idem_claim_fresh(&rec).await? {
            return Ok(Claimed::Proceed(IdemClaim { api_key_id: caller.key.id, key, fingerprint, token: now, status: 200 }));
        }
        let mut tx = self.store.write().await?;
        let outcome = if tx.idem_insert(&rec).await? {
            Claimed::Proceed(IdemClaim { api_key_id: caller.key.id, key, fingerprint, token: now, status: 200 })
        } else {
            let existing = tx.idem_get(caller.key.id, &key).await?.ok_or_else(|| CoreError::internal("idempotency record vanished"))?;
            if existing.fingerprint != fingerprint {
                telemetry::idempotency_conflict(false);
                return Err(CoreError::IdempotencyConflict { in_progress: false });
            }
            match existing.reply {
                Some(reply) => {
                    telemetry::idempotent_replay();
                    Claimed::Replay(self.open_reply(reply)?)
                }
                None if existing.lease_until <= now => {
                    tx.idem_renew(caller.key.id, &key, now, now.plus_ms(self.config.idempotency_lease_ms)).await?;
                    Claimed::Proceed(IdemClaim { api_key_id: caller.key.id, key, fingerprint, token: now, status: 200 })
                }
                None => {
                    telemetry::idempotency_conflict(true);
                    return Err(CoreError::IdempotencyConflict { in_progress: true });
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Ends a claim whose request failed: a business failure is stored to be replayed, anything
    /// else is forgotten so the client can correct the request and retry with the same key.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn idem_fail(&self, claim: &IdemClaim, err: &CoreError, reply: Reply) -> Result<()> {
        let mut tx = self.store.write().await?;
        if err.is_replayable() {
            tx.idem_complete(claim.api_key_id, &claim.key, claim.token, &self.seal_reply(&reply)).await?;
        } else {
            tx.idem_delete(claim.api_key_id, &claim.key, claim.token).await?;
        }
        tx.commit().await
    }

    /// Deletes records older than the retention window; returns how many.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn prune_idempotency(&self) -> Result<u64> {
        let cutoff = self.now().plus_ms(-RETENTION_MS);
        let mut tx = self.store.write().await?;
        let n = tx.idem_prune(cutoff).await?;
        tx.commit().await?;
        Ok(n)
    }
}
