//! Server-secret rotation (`strata secret rotate`): re-seals every value sealed at rest (each
//! `store::SealedColumn`) under the current secret, opening it with the previous one. Values
//! already under the current secret are left alone, so a rotation that stopped half-way can run
//! again.

use super::webhooks::SECRET_PURPOSE;
use super::{REPLY_PURPOSE, Strata};
use crate::cursor::ServerSecret;
use crate::error::{CoreError, Result};
use crate::store::{SealedColumn, Store};

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

/// The setting holding the check value: a known text sealed under the server secret, written at
/// first use, so a database opened with another secret is refused instead of sealing new values
/// under it (CONTRACT §9). It is never the secret itself.
pub const SECRET_CHECK_SETTING: &str = "secret_check";
const CHECK_PURPOSE: &str = "secret-check";
const CHECK_TEXT: &[u8] = b"strata server secret check v1";

/// How a database's sealed data fits a server secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretFit {
    /// The check value (or, in a database made before check values, a sealed value) opens with
    /// the secret or, during a rotation, with the previous one.
    Matches,
    /// Nothing sealed yet: any secret fits.
    Unsealed,
    /// Sealed under another secret.
    Mismatch,
}

/// Whether `secret` opens what `store` holds sealed. Without a check value (a database made
/// before check values existed) it tries the first value of each sealed column instead.
pub async fn secret_fit(store: &dyn Store, secret: Option<&ServerSecret>) -> Result<SecretFit> {
    let mut tx = store.read().await?;
    let check = tx.setting(SECRET_CHECK_SETTING).await?;
    let mut probes = Vec::new();
    if check.is_none() {
        for column in SealedColumn::ALL {
            if let Some(v) = tx.sealed_values(column, None, 1).await?.pop() {
                probes.push((purpose(column), v.sealed));
            }
        }
    }
    tx.commit().await?;
    let probes = match check {
        Some(c) => vec![(CHECK_PURPOSE, c)],
        None => probes,
    };
    if probes.is_empty() {
        return Ok(SecretFit::Unsealed);
    }
    let opens = |s: &ServerSecret| probes.iter().all(|(p, v)| s.open(p, v).is_ok());
    Ok(if secret.is_some_and(opens) { SecretFit::Matches } else { SecretFit::Mismatch })
}

/// Writes the check value under the current secret unless one is there (first use).
pub async fn init_secret_check(store: &dyn Store, secret: &ServerSecret) -> Result<()> {
    let mut tx = store.write().await?;
    tx.setting_init(SECRET_CHECK_SETTING, &secret.current().seal(CHECK_PURPOSE, CHECK_TEXT)).await?;
    tx.commit().await
}

impl Strata {
    /// After a rotation: the check value is sealed again under the current secret, so the
    /// previous one no longer opens the database.
    pub async fn reseal_secret_check(&self) -> Result<()> {
        let mut tx = self.store.write().await?;
        if let Some(old) = tx.setting(SECRET_CHECK_SETTING).await?
            && self.secret.current().open(CHECK_PURPOSE, &old).is_err()
        {
            tx.setting_remove(SECRET_CHECK_SETTING, &old).await?;
        }
        tx.setting_init(SECRET_CHECK_SETTING, &self.secret.current().seal(CHECK_PURPOSE, CHECK_TEXT)).await?;
        tx.commit().await
    }
}
