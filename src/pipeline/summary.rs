//! What a finished run did, per camera: the exit summary that is logged and, with
//! `--summary-json FILE`, written as JSON for scripts and tests.

use std::path::Path;

use serde::Serialize;

use crate::capture::CaptureEnd;
use crate::status::CameraStatus;

/// The whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Seconds from the pipeline running to every stage stopped.
    pub elapsed_s: f64,
    /// The cameras configured at the end, in index order.
    pub cameras: Vec<CameraSummary>,
    /// Messages written to the spool at shutdown.
    pub spooled: usize,
    /// Messages neither confirmed by the broker nor spooled.
    pub unconfirmed: usize,
}

/// One camera's totals over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CameraSummary {
    pub id: String,
    /// How its capture ended: `finished` (a file's end), `stopped` or `failed`.
    pub end: &'static str,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Frames decoded.
    pub frames: u64,
    /// Frames that entered preprocessing.
    pub preprocessed: u64,
    /// Label messages numbered and queued for the broker.
    pub published: u64,
    /// Frames dropped because the pipeline was busy.
    pub dropped: u64,
    pub decode_errors: u64,
    /// Frames not decoded at all (keyframe-only decoding).
    pub skipped: u64,
    pub reconnects: u64,
    /// Label messages dropped because the outbox was full.
    pub outbox_dropped: u64,
    /// Mean milliseconds per frame in each stage (decode per decoded frame, the others
    /// per classified frame).
    pub stage_ms: StageMs,
}

/// Mean milliseconds per frame by stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageMs {
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub publish: f64,
}

impl CameraSummary {
    pub fn new(
        id: &str,
        end: &CaptureEnd,
        status: &CameraStatus,
        preprocessed: u64,
        published: u64,
    ) -> CameraSummary {
        let (end, error) = match end {
            CaptureEnd::Finished { .. } => ("finished", None),
            CaptureEnd::Stopped { .. } => ("stopped", None),
            CaptureEnd::Failed(e) => ("failed", Some(e.clone())),
        };
        let per = |us: u64, n: u64| us as f64 / 1e3 / n.max(1) as f64;
        let t = status.stage_us;
        CameraSummary {
            id: id.to_owned(),
            end,
            error,
            frames: status.frames,
            preprocessed,
            published,
            dropped: status.dropped,
            decode_errors: status.decode_errors,
            skipped: status.skipped,
            reconnects: status.reconnects,
            outbox_dropped: status.outbox_dropped,
            stage_ms: StageMs {
                decode: per(t.decode, status.frames),
                preprocess: per(t.preprocess, status.classified),
                inference: per(t.inference, status.classified),
                publish: per(t.publish, status.classified),
            },
        }
    }

    /// The "camera summary" log line.
    pub fn log(&self) {
        let ms = |v: f64| format!("{v:.3}");
        tracing::info!(
            camera = %self.id,
            end = self.end,
            frames = self.frames,
            preprocessed = self.preprocessed,
            published = self.published,
            dropped = self.dropped,
            decode_errors = self.decode_errors,
            skipped = self.skipped,
            reconnects = self.reconnects,
            outbox_dropped = self.outbox_dropped,
            decode_ms = ms(self.stage_ms.decode),
            preprocess_ms = ms(self.stage_ms.preprocess),
            inference_ms = ms(self.stage_ms.inference),
            publish_ms = ms(self.stage_ms.publish),
            "camera summary"
        );
    }
}

impl Summary {
    pub fn failed_cameras(&self) -> usize {
        self.cameras.iter().filter(|c| c.end == "failed").count()
    }

    /// Writes the summary as JSON, atomically (a reader never sees half a file).
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_summary_carries_its_counters_and_means() {
        let status = CameraStatus {
            frames: 10,
            classified: 4,
            dropped: 6,
            stage_us: crate::status::StageTimes {
                decode: 20_000,
                preprocess: 8_000,
                inference: 40_000,
                publish: 400,
            },
            ..CameraStatus::default()
        };
        let end = CaptureEnd::Failed("not video".into());
        let s = CameraSummary::new("cam", &end, &status, 4, 4);
        assert_eq!((s.end, s.error.as_deref()), ("failed", Some("not video")));
        assert_eq!(
            (s.frames, s.preprocessed, s.published, s.dropped),
            (10, 4, 4, 6)
        );
        assert_eq!(
            s.stage_ms,
            StageMs {
                decode: 2.0,
                preprocess: 2.0,
                inference: 10.0,
                publish: 0.1
            }
        );
        let summary = Summary {
            cameras: vec![s],
            ..Summary::default()
        };
        assert_eq!(summary.failed_cameras(), 1);
        let json = serde_json::to_value(&summary).expect("json");
        assert_eq!(json["cameras"][0]["stage_ms"]["inference"], 10.0);
        assert_eq!(json["cameras"][0]["end"], "failed");
    }
}
