//! Server-secret rotation (`strata secret rotate`): re-seals every value sealed at rest (each
//! `store::SealedColumn`) under the current secret, opening it with the previous one. Values
//! already under the current secret are left alone, so a rotation that stopped half-way can run
//! again.

use super::webhooks::SECRET_PURPOSE;
use super::{REPLY_PURPOSE, Strata};
use crate::error::{CoreError, Result};
use crate::store::SealedColumn;

/// Rows re-sealed per transaction.
const PAGE: u32 = 500;

/// What a rotation did, over every sealed column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Values opened with the previous secret and sealed again under the current one.
    pub resealed: u64,
    /// Values already sealed under the current secret.
    pub already_current: u64,
    /// Values that changed between reading and re-sealing them (a server wrote them meanwhile,
    /// under the current secret): left as they are.
    pub changed_meanwhile: u64,
    /// Values that neither secret opens: left as they are.
    pub unreadable: u64,
}

fn purpose(column: SealedColumn) -> &'static str {
    match column {
        SealedColumn::IdempotentReply => REPLY_PURPOSE,
        SealedColumn::EndpointSecret | SealedColumn::EndpointPreviousSecret => SECRET_PURPOSE,
    }
}

impl Strata {
    /// Re-seals every sealed value under the current server secret. Needs the previous secret
    /// (`ServerSecret::with_previous`); a validation error without it.
    pub async fn reseal_all(&self) -> Result<ResealReport> {
        let Some(previous) = self.secret.previous() else {
            return Err(CoreError::validation(
                "STRATA_PREVIOUS_SECRET_KEY",
                "rotation re-seals what the previous secret sealed: give it with --previous-secret-key-file or STRATA_PREVIOUS_SECRET_KEY",
            ));
        };
        let current = self.secret.current();
        let mut report = ResealReport::default();
        for column in SealedColumn::ALL {
            let purpose = purpose(column);
            let mut after = None;
            loop {
                let mut tx = self.store.read().await?;
                let page = tx.sealed_values(column, after.as_ref(), PAGE).await?;
                tx.commit().await?;
                let Some(last) = page.last() else { break };
                after = Some(last.row.clone());
                let mut tx = self.store.write().await?;
                for value in &page {
                    if current.open_current(purpose, &value.sealed).is_ok() {
                        report.already_current += 1;
                        continue;
                    }
                    let Ok(plain) = previous.open_current(purpose, &value.sealed) else {
                        report.unreadable += 1;
                        continue;
                    };
                    if tx.replace_sealed(column, value, &current.seal(purpose, &plain)).await? {
                        report.resealed += 1;
                    } else {
                        report.changed_meanwhile += 1;
                    }
                }
                tx.commit().await?;
            }
        }
        Ok(report)
    }
}
