//! Events for `/api/events` (Server-Sent Events): each classification as published (its
//! MQTT payload, `seq` included) and each camera status as published. One bounded ring for
//! every client (a broadcast channel): a client that falls [`KEPT`] events behind is
//! dropped, never waited for; with no client, the publisher builds nothing.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Events a client may fall behind before it is dropped.
pub const KEPT: usize = 1024;

/// One event: its SSE `event:` name and its JSON.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub data: Arc<str>,
}

#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(KEPT).0,
        }
    }
}

impl Events {
    /// Whether any client listens (the publisher makes events only then).
    pub fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn send(&self, kind: &'static str, data: impl Into<Arc<str>>) {
        // No receiver is no error: nobody listens.
        let _ = self.tx.send(Event {
            kind,
            data: data.into(),
        });
    }

    /// A classification: its MQTT payload.
    pub fn classification(&self, payload: &[u8]) {
        if self.wanted() {
            self.send("classification", String::from_utf8_lossy(payload));
        }
    }

    /// A camera status: `{"camera": id, "status": <its MQTT payload>}`.
    pub fn status(&self, camera: &str, payload: &[u8]) {
        if self.wanted() {
            let id = serde_json::Value::from(camera);
            let status = String::from_utf8_lossy(payload);
            self.send("status", format!("{{\"camera\":{id},\"status\":{status}}}"));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_listeners_and_a_client_far_behind_is_told() {
        let events = Events::default();
        events.classification(b"{}");
        assert!(!events.wanted());
        let mut rx = events.subscribe();
        events.status("door-1", br#"{"state":"streaming"}"#);
        let e = rx.try_recv().expect("an event");
        assert_eq!(e.kind, "status");
        let v: serde_json::Value = serde_json::from_str(&e.data).expect("JSON");
        assert_eq!(v["camera"], "door-1");
        assert_eq!(v["status"]["state"], "streaming");
        for _ in 0..=KEPT {
            events.classification(b"{\"seq\":1}");
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
