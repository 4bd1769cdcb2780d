//! Reading the event log: a partner can reconcile from it without a webhook.

use super::{Caller, Strata};
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::EventFilter;
use crate::id::EventId;
use crate::scope::Scope;
use crate::wire::EventView;

impl Strata {
    /// `GET /v1/events` (`webhooks:read`, CONTRACT §6).
    #[tracing::instrument(level = "debug", name = "service.list_events", skip_all)]
    pub async fn list_events(&self, caller: &Caller, filter: &EventFilter, page: PageRequest) -> Result<Page<EventView>> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let rows = tx.list_events(caller.org_id(), filter, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "events", |e| e.seq).map(|e| EventView::from(&e)))
    }

    /// `GET /v1/events/:eventId`; another org's event is 404.
    #[tracing::instrument(level = "debug", name = "service.get_event", skip_all)]
    pub async fn get_event(&self, caller: &Caller, id: EventId) -> Result<EventView> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let event = tx.event(caller.org_id(), id).await?;
        tx.commit().await?;
        event.map(|e| EventView::from(&e)).ok_or(CoreError::not_found("event"))
    }
}
