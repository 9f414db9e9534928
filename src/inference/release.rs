//! Results handed on in the order their frames were taken, per camera.
//!
//! With several inference workers, a file read at full speed has more than one frame in
//! flight, and a later frame can finish first (its worker started earlier, or ran a
//! smaller batch). Every frame taken gets a ticket, in the order it was taken; a frame's
//! results are handed on only once every earlier ticket of the same camera has been
//! handed on (or given up, empty: a frame dropped or a failed run). Cameras never wait
//! for each other.

use std::collections::{HashMap, VecDeque};

/// Tickets outstanding per camera and the results that finished ahead of their turn.
#[derive(Debug)]
pub struct Release<T> {
    cameras: HashMap<usize, VecDeque<Slot<T>>>,
}

#[derive(Debug)]
struct Slot<T> {
    ticket: u64,
    /// `Some` once the frame finished, waiting for an earlier ticket.
    done: Option<Vec<T>>,
}

impl<T> Default for Release<T> {
    fn default() -> Self {
        Release {
            cameras: HashMap::new(),
        }
    }
}

impl<T> Release<T> {
    /// A frame of `camera` was taken with `ticket`: tickets of one camera must be given
    /// in increasing order.
    pub fn expect(&mut self, camera: usize, ticket: u64) {
        let queue = self.cameras.entry(camera).or_default();
        debug_assert!(queue.back().is_none_or(|s| s.ticket < ticket));
        queue.push_back(Slot { ticket, done: None });
    }

    /// The frame with `ticket` finished with `items` (empty when it has no results):
    /// hands on, through `out`, its items and those of later frames of the camera that
    /// were waiting for it, in ticket order. Stops and returns false as soon as `out`
    /// does (the receiver is gone). A ticket never expected is handed on at once.
    pub fn finish(
        &mut self,
        camera: usize,
        ticket: u64,
        items: Vec<T>,
        mut out: impl FnMut(T) -> bool,
    ) -> bool {
        let Some(queue) = self.cameras.get_mut(&camera) else {
            return items.into_iter().all(out);
        };
        match queue.iter_mut().find(|s| s.ticket == ticket) {
            Some(slot) => slot.done = Some(items),
            None => return items.into_iter().all(out),
        }
        while let Some(items) = queue.front_mut().and_then(|s| s.done.take()) {
            queue.pop_front();
            for item in items {
                if !out(item) {
                    return false;
                }
            }
        }
        // An empty queue stays, so the camera's next frame allocates nothing.
        true
    }

    /// Frames taken and not yet handed on, over every camera.
    #[cfg(test)]
    pub fn outstanding(&self) -> usize {
        self.cameras.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(
        r: &mut Release<&'static str>,
        cam: usize,
        t: u64,
        items: &[&'static str],
    ) -> Vec<&'static str> {
        let mut out = Vec::new();
        assert!(r.finish(cam, t, items.to_vec(), |x| {
            out.push(x);
            true
        }));
        out
    }

    #[test]
    fn in_order_finishes_go_straight_through() {
        let mut r = Release::default();
        r.expect(0, 1);
        r.expect(0, 2);
        assert_eq!(finish(&mut r, 0, 1, &["a", "a-region"]), ["a", "a-region"]);
        assert_eq!(finish(&mut r, 0, 2, &["b"]), ["b"]);
        assert_eq!(r.outstanding(), 0);
    }

    #[test]
    fn a_later_frame_waits_for_the_earlier_one_of_its_camera_only() {
        let mut r = Release::default();
        r.expect(0, 1);
        r.expect(1, 2);
        r.expect(0, 3);
        r.expect(0, 4);
        assert!(finish(&mut r, 0, 4, &["d"]).is_empty());
        assert!(finish(&mut r, 0, 3, &["c"]).is_empty());
        // Camera 1 does not wait for camera 0.
        assert_eq!(finish(&mut r, 1, 2, &["other"]), ["other"]);
        assert_eq!(r.outstanding(), 3);
        assert_eq!(finish(&mut r, 0, 1, &["a"]), ["a", "c", "d"]);
        assert_eq!(r.outstanding(), 0);
    }

    #[test]
    fn an_empty_frame_releases_the_ones_behind_it() {
        let mut r = Release::default();
        r.expect(5, 10);
        r.expect(5, 11);
        assert!(finish(&mut r, 5, 11, &["b"]).is_empty());
        // Frame 10 was dropped (another model's input) or its run failed.
        assert_eq!(finish(&mut r, 5, 10, &[]), ["b"]);
    }

    #[test]
    fn a_closed_receiver_stops_the_hand_off() {
        let mut r = Release::default();
        r.expect(0, 1);
        r.expect(0, 2);
        assert!(finish(&mut r, 0, 2, &["b"]).is_empty());
        let mut seen = 0;
        assert!(!r.finish(0, 1, vec!["a"], |_| {
            seen += 1;
            false
        }));
        assert_eq!(seen, 1);
    }

    #[test]
    fn an_unexpected_ticket_is_handed_on_at_once() {
        let mut r = Release::default();
        assert_eq!(finish(&mut r, 3, 7, &["x"]), ["x"]);
        r.expect(3, 8);
        assert_eq!(finish(&mut r, 3, 9, &["y"]), ["y"]);
        assert_eq!(r.outstanding(), 1);
    }
}
