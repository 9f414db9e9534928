//! The edge from a capture thread to its preprocessing, with its full-policy.

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::messages::Frame;

/// Where a capture thread sends frames, with the policy for when the edge is full.
pub enum FrameSink {
    /// Live: keep the newest; `evict` is a receiver on the same one-slot channel.
    LatestWins {
        tx: Sender<Frame>,
        evict: Receiver<Frame>,
    },
    /// Replay: block until there is room.
    Block(Sender<Frame>),
}

impl FrameSink {
    /// Passes a frame on. Returns the older frame evicted for it, if one was (its image
    /// can be reused), `Err(())` when the receiving side has gone.
    pub(super) fn send(&self, frame: Frame) -> Result<Option<Frame>, ()> {
        match self {
            FrameSink::Block(tx) => tx.send(frame).map(|_| None).map_err(|_| ()),
            FrameSink::LatestWins { tx, evict } => {
                let mut evicted = None;
                let mut frame = frame;
                loop {
                    match tx.try_send(frame) {
                        Ok(()) => return Ok(evicted),
                        Err(TrySendError::Disconnected(_)) => return Err(()),
                        Err(TrySendError::Full(back)) => {
                            frame = back;
                            // (The receiver may take it first: then the slot is free.)
                            if let Ok(old) = evict.try_recv() {
                                evicted = Some(old);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Instant, SystemTime};

    use opencv::core::Mat;

    use super::*;

    #[test]
    fn latest_wins_evicts_and_hands_back_the_evicted_frame() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sink = FrameSink::LatestWins {
            tx,
            evict: rx.clone(),
        };
        let frame = |index| Frame {
            camera_id: Arc::from("c"),
            camera: 0,
            index,
            timeline_s: 0.0,
            captured_at: SystemTime::now(),
            captured: Instant::now(),
            dropped: 0,
            image: Mat::default(),
        };
        let evicted = |r: Result<Option<Frame>, ()>| r.map(|f| f.map(|f| f.index));
        assert_eq!(evicted(sink.send(frame(0))), Ok(None));
        assert_eq!(evicted(sink.send(frame(1))), Ok(Some(0)));
        assert_eq!(evicted(sink.send(frame(2))), Ok(Some(1)));
        assert_eq!(rx.try_recv().map(|f| f.index).ok(), Some(2));
        assert!(rx.try_recv().is_err());
    }
}
