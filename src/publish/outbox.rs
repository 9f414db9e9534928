//! The outbox: every message waits here until the broker has confirmed it.
//!
//! A message moves through three queues, in order:
//! 1. `queue` (or `urgent` for status messages): not yet handed to the MQTT client;
//! 2. `handed`: handed to the client, not yet written to the network;
//! 3. `awaiting`: written with a packet id, waiting for PUBACK/PUBCOMP (QoS ≥ 1).
//!
//! Messages are handed only while a connection (a *link*) is open, each link with a
//! client of its own. The client reports writes (`Outgoing::Publish(pkid)`) in the order it
//! was handed requests, so the front of `handed` is always the message just written. When
//! the link closes, its client and everything it held are dropped (rumqttc itself forgets
//! its in-flight messages when the broker starts a new session), so every message handed
//! and not confirmed goes back to the head of its queue, in send order, for the next link.
//! Nothing leaves the outbox before it is confirmed (QoS ≥ 1) or written (QoS 0), so at
//! shutdown everything undelivered is known and can be spooled to disk.
//!
//! Only `queue` is bounded: when it is full the oldest label message is dropped and
//! counted against its camera (a gap in that camera's `seq`). Status messages replace an
//! older unsent status for the same topic instead of queueing behind labels.

use std::collections::VecDeque;

use super::config::Qos;

/// One MQTT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMsg {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: Qos,
    pub retain: bool,
    /// The camera a label message belongs to (for drop accounting); `None` for status.
    pub camera: Option<usize>,
}

#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    urgent: VecDeque<OutMsg>,
    queue: VecDeque<OutMsg>,
    handed: VecDeque<OutMsg>,
    awaiting: VecDeque<(u16, OutMsg)>,
    dropped: Vec<u64>,
    /// The open link, if any: messages are handed only to it.
    link: Option<u64>,
}

impl Outbox {
    /// `capacity`: label messages that may wait; `cameras`: for per-camera drop counts.
    pub fn new(capacity: usize, cameras: usize) -> Outbox {
        Outbox {
            capacity: capacity.max(1),
            urgent: VecDeque::new(),
            queue: VecDeque::new(),
            handed: VecDeque::new(),
            awaiting: VecDeque::new(),
            dropped: vec![0; cameras],
            link: None,
        }
    }

    /// Queues a label message; if the queue is full the oldest one is dropped and
    /// returned (already counted).
    pub fn push(&mut self, msg: OutMsg) -> Option<OutMsg> {
        let dropped = if self.queue.len() >= self.capacity {
            let old = self.queue.pop_front();
            if let Some(cam) = old.as_ref().and_then(|m| m.camera) {
                if let Some(d) = self.dropped.get_mut(cam) {
                    *d += 1;
                }
            }
            old
        } else {
            None
        };
        self.queue.push_back(msg);
        dropped
    }

    /// Queues a status message ahead of labels, replacing an unsent one on the same topic.
    pub fn push_urgent(&mut self, msg: OutMsg) {
        if let Some(old) = self.urgent.iter_mut().find(|m| m.topic == msg.topic) {
            *old = msg;
        } else {
            self.urgent.push_back(msg);
        }
    }

    /// Puts messages recovered from a spool at the head of the queue, oldest first.
    pub fn restore(&mut self, msgs: Vec<OutMsg>) {
        for m in msgs.into_iter().rev() {
            self.queue.push_front(m);
        }
    }

    /// Link `link` is connected: messages may be handed to its client.
    pub fn open_link(&mut self, link: u64) {
        self.link = Some(link);
    }

    /// The open link is gone with its client: every message handed to it and not confirmed
    /// goes back to the head of its queue, in send order (a status message only if no newer
    /// one for its topic is waiting). A QoS 1 message the broker received but whose PUBACK
    /// was lost is therefore delivered twice, as QoS 1 allows. Returns how many label
    /// messages go back that had been written (each may reach subscribers twice).
    pub fn close_link(&mut self) -> usize {
        self.link = None;
        let written = self
            .awaiting
            .iter()
            .filter(|(_, m)| m.camera.is_some())
            .count();
        let in_flight: Vec<OutMsg> = self
            .awaiting
            .drain(..)
            .map(|(_, m)| m)
            .chain(self.handed.drain(..))
            .collect();
        for m in in_flight.into_iter().rev() {
            if m.camera.is_some() {
                self.queue.push_front(m);
            } else if !self.urgent.iter().any(|u| u.topic == m.topic) {
                self.urgent.push_front(m);
            }
        }
        written
    }

    /// The next message to hand to the client, with the link it is for, if a link is
    /// open and fewer than `window` are in flight.
    pub fn next_to_send(&mut self, window: usize) -> Option<(u64, OutMsg)> {
        let link = self.link?;
        if self.handed.len() + self.awaiting.len() >= window {
            return None;
        }
        let msg = self.urgent.pop_front().or_else(|| self.queue.pop_front())?;
        self.handed.push_back(msg.clone());
        Some((link, msg))
    }

    /// The client wrote a PUBLISH with packet id `pkid` (0 for QoS 0).
    /// Returns the written message's QoS.
    pub fn on_written(&mut self, pkid: u16) -> Option<Qos> {
        let m = self.handed.pop_front()?;
        let qos = m.qos;
        if m.qos != Qos::AtMostOnce && pkid != 0 {
            self.awaiting.push_back((pkid, m));
        }
        Some(qos)
    }

    /// The broker confirmed `pkid` (PUBACK for QoS 1, PUBCOMP for QoS 2); returns the
    /// confirmed message's QoS.
    pub fn on_confirmed(&mut self, pkid: u16) -> Option<Qos> {
        let i = self.awaiting.iter().position(|(p, _)| *p == pkid)?;
        self.awaiting.remove(i).map(|(_, m)| m.qos)
    }

    /// Messages not yet confirmed: in flight first (in send order), then queued.
    pub fn undelivered(&self) -> Vec<OutMsg> {
        self.awaiting
            .iter()
            .map(|(_, m)| m.clone())
            .chain(self.handed.iter().cloned())
            .chain(self.urgent.iter().cloned())
            .chain(self.queue.iter().cloned())
            .collect()
    }

    /// Number of messages not yet confirmed.
    pub fn pending(&self) -> usize {
        self.awaiting.len() + self.handed.len() + self.urgent.len() + self.queue.len()
    }

    /// Label messages waiting to be handed to the client.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn dropped(&self, camera: usize) -> u64 {
        self.dropped.get(camera).copied().unwrap_or(0)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(cam: usize, n: u8) -> OutMsg {
        OutMsg {
            topic: format!("p/{cam}/labels"),
            payload: vec![n],
            qos: Qos::AtLeastOnce,
            retain: false,
            camera: Some(cam),
        }
    }

    fn status(topic: &str, text: &str) -> OutMsg {
        OutMsg {
            topic: topic.into(),
            payload: text.as_bytes().to_vec(),
            qos: Qos::AtLeastOnce,
            retain: true,
            camera: None,
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let mut o = Outbox::new(3, 2);
        for n in 0..3 {
            assert!(o.push(label(0, n)).is_none());
        }
        assert_eq!(o.push(label(1, 3)), Some(label(0, 0)));
        assert_eq!((o.dropped(0), o.dropped(1), o.dropped_total()), (1, 0, 1));
        let order: Vec<u8> = o.undelivered().iter().map(|m| m.payload[0]).collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn messages_stay_until_confirmed_and_are_handed_only_on_a_link() {
        let mut o = Outbox::new(10, 1);
        for n in 0..4 {
            o.push(label(0, n));
        }
        assert!(o.next_to_send(2).is_none(), "no link yet");
        o.open_link(1);
        let (la, a) = o.next_to_send(2).expect("first");
        let (_, b) = o.next_to_send(2).expect("second");
        assert!(o.next_to_send(2).is_none(), "window of 2 is full");
        assert_eq!((la, a.payload[0], b.payload[0]), (1, 0, 1));
        o.on_written(7);
        o.on_written(8);
        assert_eq!(o.pending(), 4);
        o.on_confirmed(7);
        assert_eq!(o.pending(), 3);
        let rest: Vec<u8> = o.undelivered().iter().map(|m| m.payload[0]).collect();
        assert_eq!(
            rest,
            vec![1, 2, 3],
            "in flight first, then queued, in order"
        );
        o.on_confirmed(8);
        let (_, c) = o.next_to_send(2).expect("third");
        assert_eq!(c.payload[0], 2);
    }

    #[test]
    fn a_closed_link_gives_back_what_it_held_in_send_order() {
        let mut o = Outbox::new(10, 1);
        for n in 0..5 {
            o.push(label(0, n));
        }
        o.push_urgent(status("p/cam/status", "streaming"));
        o.open_link(1);
        let sent: Vec<OutMsg> = (0..4)
            .map(|_| o.next_to_send(10).expect("sent").1)
            .collect();
        assert_eq!(sent[0].payload, b"streaming");
        o.on_written(1); // the status
        o.on_written(2); // label 0
        o.on_confirmed(2);
        // Label 1 is written, label 2 only handed; the link goes.
        o.on_written(3);
        o.push_urgent(status("p/status", "online"));
        o.close_link();
        assert!(
            o.next_to_send(10).is_none(),
            "nothing handed without a link"
        );
        assert_eq!(o.pending(), 6, "status, online, labels 1 to 4");
        o.open_link(2);
        let again: Vec<Vec<u8>> = (0..6)
            .map(|_| o.next_to_send(10).expect("resent").1.payload)
            .collect();
        let labels: Vec<Vec<u8>> = (1..5).map(|n| vec![n]).collect();
        assert_eq!(again[..2], [b"streaming".to_vec(), b"online".to_vec()]);
        assert_eq!(again[2..], labels[..]);
    }

    #[test]
    fn a_newer_status_replaces_the_one_a_closed_link_gives_back() {
        let mut o = Outbox::new(10, 1);
        o.push_urgent(status("p/cam/status", "starting"));
        o.open_link(1);
        o.next_to_send(10).expect("status");
        o.push_urgent(status("p/cam/status", "streaming"));
        o.close_link();
        o.open_link(2);
        assert_eq!(o.next_to_send(10).expect("newest").1.payload, b"streaming");
        assert!(o.next_to_send(10).is_none());
    }

    #[test]
    fn qos0_is_done_once_written() {
        let mut o = Outbox::new(10, 1);
        o.push(OutMsg {
            qos: Qos::AtMostOnce,
            ..label(0, 1)
        });
        o.open_link(1);
        o.next_to_send(4);
        assert_eq!(o.pending(), 1);
        o.on_written(0);
        assert_eq!(o.pending(), 0);
    }

    #[test]
    fn status_goes_first_and_replaces_an_unsent_one() {
        let mut o = Outbox::new(10, 1);
        o.push(label(0, 1));
        o.push_urgent(status("p/cam/status", "reconnecting"));
        o.push_urgent(status("p/status", "online"));
        o.push_urgent(status("p/cam/status", "streaming"));
        o.open_link(1);
        let first = o.next_to_send(10).expect("status").1;
        assert_eq!(first.payload, b"streaming");
        assert_eq!(o.next_to_send(10).expect("online").1.payload, b"online");
        assert_eq!(o.next_to_send(10).expect("label").1.payload, vec![1]);
    }

    #[test]
    fn restored_spool_goes_before_new_messages() {
        let mut o = Outbox::new(10, 1);
        o.push(label(0, 9));
        o.restore(vec![label(0, 1), label(0, 2)]);
        let order: Vec<u8> = o.undelivered().iter().map(|m| m.payload[0]).collect();
        assert_eq!(order, vec![1, 2, 9]);
    }
}
