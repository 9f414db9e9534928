//! Which frames to classify for a camera's or a region's `fps`: on the file's own
//! timeline, or the clock for a live source.

/// Decides which frames to classify for a target rate.
#[derive(Debug, Clone)]
pub struct FpsGate {
    interval: Option<f64>,
    next_due: f64,
}

impl FpsGate {
    /// `fps` of 0 admits every frame.
    pub fn new(fps: f64) -> Self {
        Self {
            interval: (fps > 0.0).then(|| 1.0 / fps),
            next_due: 0.0,
        }
    }

    /// Would the frame at time `t` be admitted? (See [`FpsGate::admit`].)
    pub fn due(&self, t: f64, slack: f64) -> bool {
        // A microsecond more absorbs rounding in frame timestamps.
        self.interval.is_none() || t + slack + 1e-6 >= self.next_due
    }

    /// Should the frame at time `t` (seconds, non-decreasing) be classified? It may come
    /// up to `slack` seconds early (keyframes arrive with jitter); the schedule itself
    /// does not move, so the long-run rate stays `fps`.
    pub fn admit(&mut self, t: f64, slack: f64) -> bool {
        if !self.due(t, slack) {
            return false;
        }
        let Some(interval) = self.interval else {
            return true;
        };
        self.next_due += interval;
        if self.next_due <= t {
            // After a gap, restart the schedule rather than bursting to catch up.
            self.next_due = t + interval;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_gate_thins_a_25fps_timeline_to_5() {
        let mut gate = FpsGate::new(5.0);
        let admitted: Vec<u32> = (0..50)
            .filter(|i| gate.admit(*i as f64 / 25.0, 0.0))
            .collect();
        assert_eq!(admitted, vec![0, 5, 10, 15, 20, 25, 30, 35, 40, 45]);
    }

    #[test]
    fn fps_gate_zero_admits_everything_and_gaps_do_not_burst() {
        let mut all = FpsGate::new(0.0);
        assert!((0..10).all(|i| all.admit(i as f64, 0.0)));
        let mut gate = FpsGate::new(1.0);
        assert!(gate.admit(0.0, 0.0));
        assert!(gate.admit(10.0, 0.0));
        assert!(!gate.admit(10.5, 0.0));
        assert!(gate.admit(11.0, 0.0));
    }

    #[test]
    fn fps_gate_with_slack_takes_every_jittery_keyframe_at_their_rate() {
        // Keyframes about once a second, up to 60 ms early or late; fps = 1.
        let jitter = [0.0, -0.06, 0.04, -0.03, 0.06, -0.05, 0.0, 0.02];
        let times: Vec<f64> = (0..40)
            .map(|i| f64::from(i) + jitter[i as usize % jitter.len()])
            .collect();
        let mut strict = FpsGate::new(1.0);
        let taken = times.iter().filter(|t| strict.admit(**t, 0.0)).count();
        assert!(
            taken < 40,
            "without slack early keyframes are missed: {taken}"
        );
        let mut gate = FpsGate::new(1.0);
        assert_eq!(times.iter().filter(|t| gate.admit(**t, 0.5)).count(), 40);
        // At half the keyframe rate, every other one.
        let mut half = FpsGate::new(0.5);
        assert_eq!(times.iter().filter(|t| half.admit(**t, 0.5)).count(), 20);
    }
}
