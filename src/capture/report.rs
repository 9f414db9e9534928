//! What a camera reports about its source while it reads it: the source opened, what is
//! decoded and the keyframe interval, and the demand that follows (in inferences, with the
//! camera's regions).

use std::sync::Arc;

use super::decode::Decoding;
use super::reader::Reader;
use super::Capture;

/// What was last put on the status board: what is decoded, the keyframe interval, the
/// version of the camera's targets and how many of its regions cannot be classified.
pub(super) type Reported = Option<((Decoding, Option<f64>), u64, usize)>;

impl Capture {
    /// Logs the opened source and reports what the camera asks for; returns the source's
    /// frame rate (25 when it does not say).
    pub(super) fn opened(&self, cap: &Reader) -> f64 {
        let source_fps = cap.fps();
        let decoding = cap.decoding().0.as_str();
        tracing::info!(camera = %self.id, source = %self.source(), source_fps, decoding, "source opened");
        source_fps
    }

    /// Frames per second the camera asks for: its `fps`, at most what the source gives —
    /// every frame, or its keyframes when only those are decoded. A file that is not
    /// paced asks for as many frames as the pipeline takes (0).
    fn demand(&self, source_fps: f64, cap: &Reader) -> f64 {
        if !self.source().is_live() && !self.config.realtime {
            return 0.0;
        }
        let given = match cap.decoding() {
            (Decoding::Keyframes, Some(interval)) if interval > 0.0 => 1.0 / interval,
            _ => source_fps,
        };
        if self.config.fps > 0.0 {
            self.config.fps.min(given)
        } else {
            given
        }
    }

    /// Puts what is decoded, the keyframe interval and the demand that follows from them
    /// on the status board when they moved since `reported`, and logs a change of mode
    /// once.
    pub(super) fn report_decoding(
        &self,
        cap: &mut Reader,
        source_fps: f64,
        reported: &mut Reported,
    ) {
        let now = cap.decoding();
        let version = self.targets.version();
        let failing = self.status.count(self.camera, |s| s.region_errors.len());
        let failing = failing.unwrap_or(0);
        if *reported != Some((now, version, failing)) {
            *reported = Some((now, version, failing));
            // Regions that cannot be classified (outside the frame) ask for nothing.
            let names: Vec<Arc<str>> = self
                .status
                .count(self.camera, |s| {
                    s.region_errors.iter().map(|(n, _)| n.clone()).collect()
                })
                .unwrap_or_default();
            let targets = self.targets.get().1.without(&names);
            let demand = targets.inference_demand(self.demand(source_fps, cap));
            let per_frame = targets.per_frame();
            self.status.count(self.camera, |s| {
                s.decoding = Some(now.0.as_str());
                s.keyframe_interval_s = now.1;
                s.demand_fps = demand;
                s.per_frame = per_frame;
            });
        }
        if let Some(c) = cap.take_change() {
            let interval = c.keyframe_interval_s.map(|i| format!("{i:.2}"));
            if c.fallback {
                tracing::warn!(camera = %self.id, decoding = c.decoding.as_str(),
                    keyframe_interval_s = interval, reason = c.reason,
                    "keyframe-only decoding given up: decoding every frame");
            } else {
                tracing::info!(camera = %self.id, decoding = c.decoding.as_str(),
                    keyframe_interval_s = interval, reason = c.reason, "decoding changed");
            }
        }
    }
}
