//! Server settings and sealed values (`SettingRows`).

use async_trait::async_trait;
use strata_core::error::Result;
use strata_core::store::{SealedColumn, SealedRow, SealedValue, SettingRows};

use crate::query::Q;

use super::SqlTx;

#[async_trait]
impl SettingRows for SqlTx {
    async fn setting(&mut self, name: &str) -> Result<Option<String>> {
        let row = Q::new("SELECT value FROM settings WHERE name = $1").str(name).fetch_optional(&mut self.conn).await?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn setting_init(&mut self, name: &str, value: &str) -> Result<String> {
        Q::new("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .str(name)
            .str(value)
            .execute(&mut self.conn)
            .await?;
        self.setting(name).await.map(|v| v.unwrap_or_else(|| value.to_owned()))
    }

    async fn setting_remove(&mut self, name: &str, value: &str) -> Result<bool> {
        crate::sealed::setting_remove(&mut self.conn, name, value).await
    }

    async fn sealed_values(&mut self, column: SealedColumn, after: Option<&SealedRow>, limit: u32) -> Result<Vec<SealedValue>> {
        crate::sealed::values(&mut self.conn, column, after, limit).await
    }

    async fn replace_sealed(&mut self, column: SealedColumn, old: &SealedValue, new: &str) -> Result<bool> {
        crate::sealed::replace(&mut self.conn, column, old, new).await
    }
}
