//! Notifications between committed transactions and the workers (and caches) that act on them,
//! on named channels. In one process a channel is a `Notify` (for the one worker that drains its
//! kind of work) and a broadcast of text payloads (for any number of listeners, such as a cache
//! to invalidate). On PostgreSQL, after a commit, one publisher task per process announces it to
//! the other processes with `pg_notify(<channel>, '')` (commits in quick succession go out as one
//! notification, and no transaction waits for it: a `NOTIFY` inside a transaction would
//! serialize the commits of every such transaction on one lock), and one `LISTEN` connection per
//! process relays every channel to the same local `Notify` and broadcast, so another node's
//! commit reaches here too. A notification lost to a crash between a commit and its publication
//! is covered by the workers' periodic poll.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

/// New outbox events (the dispatcher's work).
pub const EVENTS: &str = "strata_events";
/// New or re-queued webhook deliveries (the sender's work).
pub const DELIVERIES: &str = "strata_deliveries";
/// Keys and orgs changed (the authorization cache's invalidations, see `auth_cache`). Sent inside
/// the changing transaction, with the ids as payload, not through the publisher.
pub const AUTH: &str = "strata_auth";
/// Every channel the listener subscribes to; a new channel is added here.
pub const CHANNELS: &[&str] = &[EVENTS, DELIVERIES, AUTH];

/// The channel that carries a kind of worker wake-up.
pub fn channel_of(kind: strata_core::store::Wake) -> &'static str {
    match kind {
        strata_core::store::Wake::Events => EVENTS,
        strata_core::store::Wake::Deliveries => DELIVERIES,
    }
}

/// What a listener hears after the `LISTEN` connection was lost and re-made: notifications sent
/// meanwhile are gone, so anything on the channel may have changed.
pub const LOST: &str = "*";

struct Channel {
    wake: Arc<Notify>,
    payloads: broadcast::Sender<String>,
}

/// The channels of one process.
pub struct Hub {
    channels: HashMap<&'static str, Channel>,
    /// Channels with commits not yet announced to other processes.
    outgoing: Mutex<BTreeSet<&'static str>>,
    /// Wakes the publisher when `outgoing` gains a channel.
    outgoing_ready: Notify,
    /// Whether a publisher runs (PostgreSQL); without one, `publish` does nothing.
    publishing: AtomicBool,
    /// The `LISTEN` connection's epoch: 0 while it is down, a new number each time it is up.
    listen_epoch: AtomicU64,
    /// The last epoch handed out.
    epochs: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        let channels =
            CHANNELS.iter().map(|&name| (name, Channel { wake: Arc::default(), payloads: broadcast::channel(1024).0 })).collect();
        Self {
            channels,
            outgoing: Mutex::default(),
            outgoing_ready: Notify::new(),
            publishing: AtomicBool::new(false),
            listen_epoch: AtomicU64::new(0),
            epochs: AtomicU64::new(0),
        }
    }
}

impl Hub {
    fn channel(&self, name: &str) -> &Channel {
        self.channels.get(name).unwrap_or_else(|| panic!("notification channel {name} is not in notify::CHANNELS"))
    }

    /// The channel's wake-up, for the one worker that drains it: a signal that finds it busy is
    /// kept, so it never misses one.
    pub fn wakeup(&self, name: &str) -> Arc<Notify> {
        self.channel(name).wake.clone()
    }

    /// Every payload sent on the channel from now on (`LOST` after a lost connection).
    pub fn subscribe(&self, name: &str) -> broadcast::Receiver<String> {
        self.channel(name).payloads.subscribe()
    }

    /// The `LISTEN` connection's current epoch, or `None` while it is down (notifications from
    /// other processes may be missed). A notification heard on the connection was heard under
    /// the epoch it reports; anything cached under an older one may have missed some.
    pub fn listen_epoch(&self) -> Option<u64> {
        Some(self.listen_epoch.load(Ordering::SeqCst)).filter(|&e| e != 0)
    }

    fn set_listening(&self, up: bool) {
        let epoch = if up { self.epochs.fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
        self.listen_epoch.store(epoch, Ordering::SeqCst);
    }

    /// Delivers a notification in this process.
    pub fn signal(&self, name: &str, payload: &str) {
        if let Some(c) = self.channels.get(name) {
            c.wake.notify_one();
            // No subscriber is fine: nobody is listening for payloads on this channel.
            let _ = c.payloads.send(payload.to_owned());
        }
    }

    /// Announces a commit on `name` to the other processes, through the publisher task (see the
    /// module); a no-op where no publisher runs.
    pub fn publish(&self, name: &'static str) {
        if self.publishing.load(Ordering::Relaxed) {
            if let Ok(mut o) = self.outgoing.lock() {
                o.insert(name);
            }
            self.outgoing_ready.notify_one();
        }
    }

    /// Sends `pg_notify` for every channel `publish` marked, over one connection of its own,
    /// until the returned task is aborted. Marks made while a batch is being sent go out in the
    /// next one; a lost connection is re-made (a second later if it fails).
    pub fn spawn_publisher(self: &Arc<Self>, url: String) -> JoinHandle<()> {
        use sqlx::Connection;
        self.publishing.store(true, Ordering::Relaxed);
        let hub = self.clone();
        tokio::spawn(async move {
            let mut conn: Option<sqlx::PgConnection> = None;
            loop {
                hub.outgoing_ready.notified().await;
                let batch: Vec<&'static str> = match hub.outgoing.lock() {
                    Ok(mut o) => std::mem::take(&mut *o).into_iter().collect(),
                    Err(_) => continue,
                };
                for channel in batch {
                    if conn.is_none() {
                        match sqlx::PgConnection::connect(&url).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot open the NOTIFY connection; other nodes fall back to polling");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                continue;
                            }
                        }
                    }
                    if let Some(c) = conn.as_mut()
                        && let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(&mut *c).await
                    {
                        tracing::warn!(error = %e, "NOTIFY failed; reconnecting");
                        conn = None;
                    }
                }
            }
        })
    }

    /// Relays every channel's notifications from PostgreSQL into this process, over one
    /// connection of its own, until the returned task is aborted. A lost connection is re-made
    /// (a second later if it fails); every channel is signalled `LOST` when it is lost and again
    /// when it listens anew, and `listen_epoch` says which (if any) connection is listening.
    pub fn spawn_listener(self: &Arc<Self>, url: String) -> JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen_all(CHANNELS.iter().copied()).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                // Listening from here on: a new epoch (what was sent before is not assumed heard).
                hub.set_listening(true);
                CHANNELS.iter().for_each(|c| hub.signal(c, LOST));
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => hub.signal(n.channel(), n.payload()),
                        // The connection was lost: what is sent until a new one listens is gone.
                        // A new listener is made here (rather than letting this one reconnect
                        // unseen) so the moment it listens again is known.
                        Ok(None) => {
                            hub.set_listening(false);
                            tracing::warn!("the LISTEN connection was lost; reconnecting");
                            CHANNELS.iter().for_each(|c| hub.signal(c, LOST));
                            break;
                        }
                        Err(e) => {
                            hub.set_listening(false);
                            tracing::warn!(error = %e, "the LISTEN connection failed; reconnecting");
                            CHANNELS.iter().for_each(|c| hub.signal(c, LOST));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            break;
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_wakes_the_worker_later_and_reaches_every_subscriber() {
        let hub = Hub::default();
        let mut sub = hub.subscribe(EVENTS);
        hub.signal(EVENTS, "evt_1");
        // Nobody was waiting: the wake-up is kept for the worker's next wait.
        tokio::time::timeout(Duration::from_secs(5), hub.wakeup(EVENTS).notified()).await.expect("kept");
        assert_eq!(sub.recv().await.unwrap(), "evt_1");
    }
}
