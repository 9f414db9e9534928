//! Which frames of a stream are decoded at all (`decode` in `[[camera]]`).
//!
//! A camera classified at 1 frame/s needs one frame in 25: decoding only keyframes
//! (frames that decode on their own) skips the rest before the decoder sees them.
//! [`KeyframePolicy`] is the decision, pure so it is tested directly: it measures the
//! keyframe interval from the packets' key flags (no decoding needed for that), picks
//! keyframes when `auto` and the camera's `fps` is at or below the keyframe rate, and falls
//! back to decoding every frame when keyframes do not come (intra refresh, a very long or
//! broken GOP) or do not decode to whole pictures.

use serde::Deserialize;

/// `decode` as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// Keyframes while the camera's `fps` is at or below the stream's keyframe rate and
    /// keyframes decode to whole pictures; every frame otherwise.
    #[default]
    Auto,
    /// Every frame (needed for `fps = 0` and rates above the keyframe rate).
    All,
    /// Keyframes only, falling back to every frame when the stream has none.
    Keyframes,
}

/// What is decoded right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    All,
    Keyframes,
}

impl Decoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Decoding::All => "all",
            Decoding::Keyframes => "keyframes",
        }
    }
}

/// A change of what is decoded, to be reported once.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub decoding: Decoding,
    pub keyframe_interval_s: Option<f64>,
    pub reason: &'static str,
    /// Keyframe-only decoding was given up for good.
    pub fallback: bool,
}

/// Keyframes that may decode to something other than a whole picture, in a row, before
/// keyframe-only decoding is given up.
const BROKEN_KEYFRAMES: u32 = 3;

/// The decision for one open stream.
#[derive(Debug, Clone)]
pub struct KeyframePolicy {
    mode: DecodeMode,
    /// Seconds between classified frames (none for `fps = 0`).
    period: Option<f64>,
    decoding: Decoding,
    started: f64,
    last_key: Option<f64>,
    interval: Option<f64>,
    intervals: u32,
    broken: u32,
    /// Keyframe-only decoding was given up for good on this stream.
    fell_back: bool,
    /// How long a stream may go without a keyframe before keyframe-only decoding stops.
    wait: f64,
    change: Option<Change>,
}

impl KeyframePolicy {
    /// `now` is the stream's clock (seconds) at its first packet, or NaN to take the
    /// first packet's time.
    pub fn new(mode: DecodeMode, fps: f64, now: f64) -> KeyframePolicy {
        let period = (fps > 0.0).then(|| 1.0 / fps);
        KeyframePolicy {
            mode,
            period,
            decoding: match mode {
                DecodeMode::Keyframes => Decoding::Keyframes,
                DecodeMode::All | DecodeMode::Auto => Decoding::All,
            },
            started: now,
            last_key: None,
            interval: None,
            intervals: 0,
            broken: 0,
            fell_back: false,
            wait: period.map_or(10.0, |p| (3.0 * p).max(10.0)),
            change: None,
        }
    }

    pub fn decoding(&self) -> Decoding {
        self.decoding
    }

    /// The measured keyframe interval, seconds.
    pub fn keyframe_interval(&self) -> Option<f64> {
        self.interval
    }

    /// A packet arrived at `t`: should it be decoded?
    pub fn on_packet(&mut self, key: bool, t: f64) -> bool {
        if self.started.is_nan() {
            self.started = t;
        }
        if key {
            if let Some(last) = self.last_key {
                let gap = t - last;
                // The latest interval: a dynamic GOP shows as it changes. A clock that
                // went backwards (the source restarted) measures nothing.
                if gap > 0.0 {
                    self.interval = Some(gap);
                    self.intervals += 1;
                }
            }
            self.last_key = Some(t);
        }
        self.decide(t);
        match self.decoding {
            Decoding::All => true,
            Decoding::Keyframes => key,
        }
    }

    /// A decoded frame came out of a keyframe-only decoder: `whole` when it is an
    /// intra-coded picture that needed no other frame.
    pub fn on_frame(&mut self, whole: bool) {
        if self.decoding != Decoding::Keyframes {
            return;
        }
        if whole {
            self.broken = 0;
        } else {
            self.broken += 1;
            if self.broken >= BROKEN_KEYFRAMES {
                self.fall_back("keyframes do not decode to whole pictures");
            }
        }
    }

    /// The decoder rejected a packet.
    pub fn on_decode_error(&mut self) {
        self.on_frame(false);
    }

    /// The change since the last call, if any.
    pub fn take_change(&mut self) -> Option<Change> {
        self.change.take()
    }

    /// How early (seconds) the fps gate may admit a frame: keyframes arrive with jitter,
    /// and a gate insisting on a full period would take every other one.
    pub fn slack(&self) -> f64 {
        match (self.decoding, self.interval.or(self.period)) {
            (Decoding::Keyframes, Some(i)) => 0.5 * i,
            _ => 0.0,
        }
    }

    fn decide(&mut self, t: f64) {
        if self.fell_back {
            return;
        }
        match self.mode {
            DecodeMode::All => {}
            DecodeMode::Keyframes => {
                if t - self.last_key.unwrap_or(self.started) > self.wait {
                    self.fall_back("no keyframe");
                }
            }
            DecodeMode::Auto => {
                let (Some(period), Some(interval)) = (self.period, self.interval) else {
                    return;
                };
                if self.intervals < 2 {
                    return;
                }
                // Every keyframe is wanted when a classified frame is due no more often
                // than keyframes come (5% for timing jitter).
                let want = if period >= 0.95 * interval {
                    Decoding::Keyframes
                } else {
                    Decoding::All
                };
                if want == Decoding::Keyframes && t - self.last_key.unwrap_or(t) > self.wait {
                    self.fall_back("no keyframe");
                } else if want != self.decoding {
                    self.switch(want, "measured keyframe interval");
                }
            }
        }
    }

    fn fall_back(&mut self, reason: &'static str) {
        self.fell_back = true;
        self.switch(Decoding::All, reason);
    }

    fn switch(&mut self, decoding: Decoding, reason: &'static str) {
        self.decoding = decoding;
        self.broken = 0;
        self.change = Some(Change {
            decoding,
            keyframe_interval_s: self.interval,
            reason,
            fallback: self.fell_back,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` packets at 25 fps with a keyframe every `gop`; returns the indices decoded.
    fn feed(p: &mut KeyframePolicy, from: u32, n: u32, gop: u32) -> Vec<u32> {
        (from..from + n)
            .filter(|i| p.on_packet(i % gop == 0, f64::from(*i) / 25.0))
            .collect()
    }

    #[test]
    fn auto_picks_keyframes_at_1fps_on_a_1s_gop_after_two_intervals() {
        let mut p = KeyframePolicy::new(DecodeMode::Auto, 1.0, 0.0);
        let first = feed(&mut p, 0, 51, 25);
        assert_eq!(first.len(), 51, "every frame while measuring");
        assert_eq!(p.decoding(), Decoding::Keyframes);
        let change = p.take_change().expect("reported");
        assert_eq!(change.decoding, Decoding::Keyframes);
        assert!((change.keyframe_interval_s.unwrap_or(0.0) - 1.0).abs() < 1e-9);
        assert_eq!(feed(&mut p, 51, 100, 25), vec![75, 100, 125, 150]);
        assert!(p.take_change().is_none(), "reported once");
        assert!((p.slack() - 0.5).abs() < 1e-9);
    }

    #[test]
    fn auto_decodes_everything_at_fps_0_or_above_the_keyframe_rate() {
        for fps in [0.0, 5.0] {
            let mut p = KeyframePolicy::new(DecodeMode::Auto, fps, 0.0);
            assert_eq!(feed(&mut p, 0, 200, 25).len(), 200, "fps {fps}");
            assert_eq!(p.decoding(), Decoding::All);
            assert!(p.take_change().is_none());
        }
    }

    #[test]
    fn a_stream_without_keyframes_falls_back_within_the_wait() {
        // Intra refresh: one IDR at the start, none after.
        let mut p = KeyframePolicy::new(DecodeMode::Keyframes, 1.0, 0.0);
        let decoded: Vec<u32> = (0..400)
            .filter(|i| p.on_packet(*i == 0, f64::from(*i) / 25.0))
            .collect();
        assert_eq!(decoded[0], 0);
        // 10 s without a keyframe, then every frame.
        assert_eq!(decoded[1], 251);
        assert_eq!(decoded.len(), 1 + (400 - 251));
        assert_eq!(p.take_change().map(|c| c.reason), Some("no keyframe"));
        assert_eq!(p.decoding(), Decoding::All);
    }

    #[test]
    fn keyframes_that_are_not_whole_pictures_fall_back() {
        let mut p = KeyframePolicy::new(DecodeMode::Keyframes, 1.0, 0.0);
        for i in 0..3 {
            assert!(p.on_packet(true, f64::from(i)));
            p.on_frame(false);
        }
        assert_eq!(p.decoding(), Decoding::All);
        assert_eq!(
            p.take_change().map(|c| c.reason),
            Some("keyframes do not decode to whole pictures")
        );
        // Given up for good, even if keyframes look fine later.
        for i in 3..10 {
            p.on_packet(true, f64::from(i));
            p.on_frame(true);
        }
        assert_eq!(p.decoding(), Decoding::All);
    }

    #[test]
    fn a_long_gop_stays_on_keyframes_and_is_measured() {
        // A keyframe every 8 s, classified every 10 s.
        let mut p = KeyframePolicy::new(DecodeMode::Auto, 0.1, 0.0);
        let decoded = feed(&mut p, 0, 25 * 40, 200);
        assert_eq!(p.decoding(), Decoding::Keyframes);
        assert!((p.keyframe_interval().unwrap_or(0.0) - 8.0).abs() < 1e-9);
        // Every frame until the second interval was measured (packets 0..=400), then keyframes.
        assert_eq!(decoded.iter().filter(|i| *i % 200 != 0).count(), 398);
        assert_eq!(decoded.last(), Some(&800));
    }
}
