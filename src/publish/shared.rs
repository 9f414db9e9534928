//! What the publisher thread and its two tasks share: the outbox, the connection state and
//! the wake-ups between them.

use std::sync::atomic::AtomicBool;
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
}

impl Shared {
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
