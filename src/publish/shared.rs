//! What the publisher thread and its two tasks share: the outbox, the connection state and
//! the wake-ups between them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::client::Client;
use super::homeassistant;
use super::outbox::{OutMsg, Outbox};

/// State shared by the publisher thread and its two tasks.
pub(super) struct Shared {
    pub(super) outbox: Mutex<Outbox>,
    pub(super) connected: AtomicBool,
    pub(super) stopping: AtomicBool,
    /// Wakes the feeder: a message arrived, one was confirmed, or the client connected.
    pub(super) work: Notify,
    /// Wakes whoever waits for the outbox to drain.
    pub(super) progress: Notify,
    /// Home Assistant discovery for the active cameras, when configured.
    pub(super) discovery: Mutex<Option<homeassistant::Discovery>>,
    /// The client of the current link (see [`Outbox::open_link`]) and its number.
    client: Mutex<Option<(u64, Arc<Client>)>>,
    /// The server connected to last (`host:port`), and how often that moved to another.
    broker: Mutex<Option<String>>,
    failovers: AtomicU64,
}

impl Shared {
    /// The driver connected to `server`: (fail-overs so far, whether this was one, i.e.
    /// the last connection was to another server).
    pub(super) fn connected_to(&self, server: &str) -> (u64, bool) {
        let mut last = self.broker.lock().unwrap_or_else(|e| e.into_inner());
        let moved = last.as_deref().is_some_and(|l| l != server);
        *last = Some(server.to_owned());
        if moved {
            return (self.failovers.fetch_add(1, Ordering::Relaxed) + 1, true);
        }
        (self.failovers.load(Ordering::Relaxed), false)
    }

    /// The server connected to last and the fail-overs so far.
    pub(super) fn broker(&self) -> (Option<String>, u64) {
        let last = self
            .broker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (last, self.failovers.load(Ordering::Relaxed))
    }

    pub(super) fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // Nothing panics while holding this lock; if something did, the queues are
        // still consistent enough to deliver or spool.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn discovery(&self) -> MutexGuard<'_, Option<homeassistant::Discovery>> {
        self.discovery.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `client` the client of link `link`.
    pub(super) fn set_client(&self, link: u64, client: Arc<Client>) {
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some((link, client));
    }

    /// The client of link `link`, unless that link is gone.
    pub(super) fn client_for(&self, link: u64) -> Option<Arc<Client>> {
        let slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|(l, _)| *l == link)
            .map(|(_, c)| c.clone())
    }

    /// The newest client, connected or not.
    pub(super) fn client(&self) -> Option<Arc<Client>> {
        let slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|(_, c)| c.clone())
    }

    pub(super) fn changed(&self) {
        self.work.notify_one();
        self.progress.notify_waiters();
    }
}

impl Shared {
    pub(super) fn new(outbox: Outbox, discovery: Option<homeassistant::Discovery>) -> Shared {
        Shared {
            outbox: Mutex::new(outbox),
            connected: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            work: Notify::new(),
            progress: Notify::new(),
            discovery: Mutex::new(discovery),
            client: Mutex::new(None),
            broker: Mutex::new(None),
            failovers: AtomicU64::new(0),
        }
    }

    /// Queues state messages ahead of the labels.
    pub(super) fn extend_urgent(&self, msgs: Vec<OutMsg>) {
        let mut outbox = self.outbox();
        for m in msgs {
            outbox.push_urgent(m);
        }
    }
}
