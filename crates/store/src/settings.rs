//! Process-wide settings that must survive restarts, such as the generated session secret.

use sqlx::any::AnyExecutor;

use crate::{Store, StoreError};

impl Store {
    /// The stored value of `key`; when there is none, stores `init()` and returns it.
    ///
    /// Race-safe: of several processes initialising at once, one insert wins and every caller
    /// returns the winner's value.
    pub async fn setting_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        if let Some(value) = select_setting(&self.pool, key).await? {
            return Ok(value);
        }
        insert_setting_if_absent(&self.pool, key, &init()).await?;
        select_setting(&self.pool, key)
            .await?
            .ok_or(StoreError::NotFound)
    }
}

async fn select_setting(e: impl AnyExecutor<'_>, key: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(r#"select value from settings where key = $1"#)
        .bind(key)
        .fetch_optional(e)
        .await
}

async fn insert_setting_if_absent(
    e: impl AnyExecutor<'_>,
    key: &str,
    value: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into settings (key, value) values ($1, $2) on conflict (key) do nothing"#,
    )
    .bind(key)
    .bind(value)
    .execute(e)
    .await?;
    Ok(())
}
