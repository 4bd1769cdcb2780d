//! Tenant-scoped lookups every service shares: a direct child of the acting org, a key of an
//! org, a project of an org. Each reads through the port with the owning org, so another
//! tenant's id is "not found" (404) and nothing of it is locked.

use crate::error::{CoreError, Result};
use crate::id::{ApiKeyId, OrgId, ProjectId};
use crate::key::ApiKey;
use crate::org::Org;
use crate::project::Project;
use crate::store::{Owner, Tx};

/// Loads a direct child of `parent` (locked inside a write transaction), or 404.
pub(crate) async fn child_of(tx: &mut dyn Tx, parent: OrgId, id: OrgId) -> Result<Org> {
    tx.org(Owner::Org(parent), id).await?.ok_or(CoreError::not_found("organization"))
}

/// Loads a direct child of `parent` held against a concurrent change (archive, suspension)
/// until commit, without queueing other writes that hold it so (`Tx::org_shared`), or 404.
pub(crate) async fn child_held(tx: &mut dyn Tx, parent: OrgId, id: OrgId) -> Result<Org> {
    tx.org_shared(Owner::Org(parent), id).await?.ok_or(CoreError::not_found("organization"))
}

/// Loads any org, whoever owns it (the operator's and the system's lookups), or 404.
pub(crate) async fn any_org(tx: &mut dyn Tx, id: OrgId) -> Result<Org> {
    tx.org(Owner::System, id).await?.ok_or(CoreError::not_found("organization"))
}

/// Loads a key of `org` (locked inside a write transaction), or 404.
pub(crate) async fn key_of(tx: &mut dyn Tx, org: OrgId, id: ApiKeyId) -> Result<ApiKey> {
    tx.key(Owner::Org(org), id).await?.ok_or(CoreError::not_found("API key"))
}

/// Loads a project of `org` (locked inside a write), or 404.
pub(crate) async fn project_in(tx: &mut dyn Tx, org: OrgId, id: ProjectId) -> Result<Project> {
    tx.project(org, id).await?.ok_or(CoreError::not_found("project"))
}
