//! `[[camera]]`: the file's section as written ([`RawCamera`]) and the checked
//! [`CameraConfig`] a capture thread runs with.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{DecodeMode, Source};
use crate::monitor::frames::JpegKey;
use crate::preprocess::{check_regions, RawRegion, RegionConfig, TargetsConfig};
use crate::problems::Problems;

/// One `[[camera]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// Identifier used in topics: `[A-Za-z0-9_-]+`, unique.
    pub id: String,
    /// An RTSP/HTTP URL, a V4L2 device (`/dev/video0` or an index such as `"0"`), or a file.
    pub source: String,
    /// Frames per second to classify; 0 classifies every frame.
    #[serde(default)]
    pub fps: f64,
    /// Files only: read at the video's own frame rate, like a live camera (no frame lost).
    #[serde(default)]
    pub realtime: bool,
    /// A live source that delivers no frame for this long is reopened (state `stalled`).
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout_s: f64,
    /// Longest time opening a source may take.
    #[serde(default = "default_open_timeout")]
    pub open_timeout_s: f64,
    /// Cap of the exponential backoff between reopen attempts.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_s: f64,
    /// Which frames of a network stream are decoded: `auto` (keyframes only while `fps`
    /// is at or below the stream's keyframe rate, every frame otherwise), `all`, or
    /// `keyframes`. Files and devices decode every frame.
    #[serde(default)]
    pub decode: DecodeMode,
    /// Also classify the whole frame (on `{prefix}/{camera}/labels`).
    #[serde(default = "default_true")]
    pub full_frame: bool,
    /// `[[camera.region]]`: parts of the frame classified on topics of their own.
    #[serde(default, rename = "region")]
    pub regions: Vec<RawRegion>,
    /// Publish a JPEG of the frame on `{prefix}/{camera}/snapshot` (retained) when the
    /// debounced label changes, and once at start.
    #[serde(default)]
    pub snapshot: bool,
    /// The snapshot's height in pixels (width in proportion; never above the frame's own).
    pub snapshot_height: Option<i64>,
    /// The snapshot's JPEG quality, 1–100.
    pub snapshot_quality: Option<i64>,
}

/// Snapshot height unless `snapshot_height` says otherwise.
pub const SNAPSHOT_HEIGHT: u32 = 480;
/// Snapshot JPEG quality unless `snapshot_quality` says otherwise.
pub const SNAPSHOT_QUALITY: u8 = 75;

fn default_true() -> bool {
    true
}

fn default_stall_timeout() -> f64 {
    5.0
}
fn default_open_timeout() -> f64 {
    10.0
}
fn default_reconnect_max() -> f64 {
    30.0
}

/// One camera, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    pub id: String,
    pub source: Source,
    /// Frames per second to classify; 0 = every frame.
    pub fps: f64,
    /// File sources: pace reading at the video's frame rate.
    pub realtime: bool,
    pub stall_timeout: Duration,
    pub open_timeout: Duration,
    pub reconnect_max: Duration,
    pub decode: DecodeMode,
    /// Classify the whole frame.
    pub full_frame: bool,
    /// Regions of interest, each classified on its own topic.
    pub regions: Vec<RegionConfig>,
    /// MQTT snapshots: the height and quality they are encoded at (`overlay` is false).
    pub snapshot: Option<JpegKey>,
}

impl CameraConfig {
    /// What it classifies in each frame.
    pub fn targets(&self) -> TargetsConfig {
        TargetsConfig {
            full_frame: self.full_frame,
            regions: self.regions.clone(),
            camera_fps: self.fps,
        }
    }

    /// Same source and reading, whatever the regions, `full_frame` and snapshots (a
    /// reload that changes only those keeps the source open).
    pub fn same_source_as(&self, other: &CameraConfig) -> bool {
        let bare = |c: &CameraConfig| CameraConfig {
            full_frame: true,
            regions: Vec::new(),
            snapshot: None,
            ..c.clone()
        };
        bare(self) == bare(other)
    }
}

impl RawCamera {
    /// Checks `camera[i]`; relative file sources are joined to `base`.
    pub fn check(self, i: usize, base: &Path, p: &mut Problems) -> Option<CameraConfig> {
        let field = |name: &str| format!("camera[{i}].{name}");
        let mut ok = p.name(&field("id"), &self.id);
        if self.source.trim().is_empty() {
            p.add(field("source"), "must not be empty");
            ok = false;
        }
        if !self.fps.is_finite() || self.fps < 0.0 || self.fps > 1000.0 {
            p.add(
                field("fps"),
                format!("{} must be between 0 (every frame) and 1000", self.fps),
            );
            ok = false;
        }
        let source = Source::parse(&self.source, base);
        if self.realtime && source.is_live() {
            p.add(
                field("realtime"),
                "only for file sources (live sources are real time already)",
            );
            ok = false;
        }
        if self.decode == DecodeMode::Keyframes && !matches!(source, Source::Network(_)) {
            p.add(
                field("decode"),
                "\"keyframes\" is for network streams (files and devices decode every frame)",
            );
            ok = false;
        }
        let snapshot = self.check_snapshot(i, p);
        let had_regions = !self.regions.is_empty();
        let regions = check_regions(self.regions, i, self.fps, p);
        if !self.full_frame && !had_regions {
            p.add(
                field("full_frame"),
                "false needs at least one [[camera.region]] (nothing would be classified)",
            );
            ok = false;
        }
        let stall = p.seconds(&field("stall_timeout_s"), self.stall_timeout_s, 0.5, 600.0);
        let open = p.seconds(&field("open_timeout_s"), self.open_timeout_s, 0.5, 600.0);
        let reconnect = p.seconds(&field("reconnect_max_s"), self.reconnect_max_s, 1.0, 3600.0);
        let (Some(stall_timeout), Some(open_timeout), Some(reconnect_max)) =
            (stall, open, reconnect)
        else {
            return None;
        };
        ok.then_some(CameraConfig {
            source,
            id: self.id,
            fps: self.fps,
            realtime: self.realtime,
            stall_timeout,
            open_timeout,
            reconnect_max,
            decode: self.decode,
            full_frame: self.full_frame,
            regions,
            snapshot: snapshot?,
        })
    }

    /// `snapshot`, `snapshot_height`, `snapshot_quality`: `None` when one is wrong.
    fn check_snapshot(&self, i: usize, p: &mut Problems) -> Option<Option<JpegKey>> {
        let field = |name: &str| format!("camera[{i}].{name}");
        let height = self
            .snapshot_height
            .map(|h| p.range(&field("snapshot_height"), h, 16, 4320));
        let quality = self
            .snapshot_quality
            .map(|q| p.range(&field("snapshot_quality"), q, 1, 100));
        if !self.snapshot {
            for (name, set) in [
                ("snapshot_height", height.is_some()),
                ("snapshot_quality", quality.is_some()),
            ] {
                if set {
                    p.add(field(name), "needs snapshot = true");
                }
            }
            return (height.is_none() && quality.is_none()).then_some(None);
        }
        let height = height.unwrap_or(Some(SNAPSHOT_HEIGHT.into()))?;
        let quality = quality.unwrap_or(Some(SNAPSHOT_QUALITY.into()))?;
        Some(Some(JpegKey {
            height: Some(height as u32),
            quality: quality as u8,
            overlay: false,
        }))
    }
}

/// Camera ids must be unique; `cameras` pairs each valid camera with its index in the file.
pub fn check_unique_ids(cameras: &[(usize, CameraConfig)], p: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, c) in cameras {
        if !seen.insert(c.id.as_str()) {
            p.add(format!("camera[{i}].id"), format!("duplicate {:?}", c.id));
        }
    }
}
