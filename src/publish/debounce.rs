//! The debounced label: a camera's top-1 class, changed only when a new class has been
//! top-1 for `hold` of the last `window` classified frames, so automations do not chatter
//! on a single odd frame.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct Debouncer {
    hold: usize,
    window: usize,
    recent: VecDeque<usize>,
    current: Option<usize>,
}

impl Debouncer {
    /// `hold` of the last `window` frames (1 ≤ hold ≤ window).
    pub fn new(hold: usize, window: usize) -> Debouncer {
        Debouncer {
            hold: hold.max(1),
            window: window.max(hold).max(1),
            recent: VecDeque::with_capacity(window),
            current: None,
        }
    }

    /// Feeds one frame's top-1 class; returns the new label when it changes.
    pub fn push(&mut self, top1: usize) -> Option<usize> {
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(top1);
        if self.current == Some(top1) {
            return None;
        }
        let held = self.recent.iter().filter(|&&c| c == top1).count();
        if held >= self.hold {
            self.current = Some(top1);
            return Some(top1);
        }
        None
    }

    pub fn current(&self) -> Option<usize> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_only_after_hold_of_window() {
        let mut d = Debouncer::new(3, 5);
        assert_eq!(d.push(1), None);
        assert_eq!(d.push(1), None);
        assert_eq!(d.push(1), Some(1));
        // One odd frame does not flip it, nor do two.
        assert_eq!(d.push(7), None);
        assert_eq!(d.push(7), None);
        assert_eq!(d.current(), Some(1));
        // A third 7 within the last five frames does.
        assert_eq!(d.push(7), Some(7));
        assert_eq!(d.push(7), None);
        // Alternating classes never reach 3 of 5 for the newcomer after it drops out.
        assert_eq!(d.push(2), None);
        assert_eq!(d.push(3), None);
        assert_eq!(d.push(2), None);
        assert_eq!(d.push(3), None);
        assert_eq!(d.current(), Some(7));
    }

    #[test]
    fn hold_one_follows_every_change() {
        let mut d = Debouncer::new(1, 1);
        assert_eq!(d.push(4), Some(4));
        assert_eq!(d.push(4), None);
        assert_eq!(d.push(5), Some(5));
    }
}
