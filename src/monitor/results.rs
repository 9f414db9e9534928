//! The latest results per camera, for the admin API and the console: each camera's last
//! classification of the whole frame and of each region, its capture→publish latencies over
//! the last minute, and over the last ten minutes its top-1 changes (the label timeline)
//! and classified frames and latency per 10 s (the sparklines). The publisher records
//! every classification (no allocation once a camera's slots exist: the top-k lists are
//! copied into kept buffers); the admin listener reads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::PerCamera;
use crate::messages::{Classification, ModelInfo, RegionOf, Scored};

/// Latencies kept per camera: the last minute, at most this many.
const LATENCY_SAMPLES: usize = 4096;
const LATENCY_WINDOW: Duration = Duration::from_secs(60);
/// How far back the timeline and the sparklines go.
pub const HISTORY: Duration = Duration::from_secs(600);
/// One sparkline point per this much time.
pub const BUCKET: Duration = Duration::from_secs(10);
/// Top-1 changes kept per camera (a label that flickers every frame would otherwise grow
/// the timeline without bound).
const CHANGES_KEPT: usize = 600;

/// One camera's (or region's) last classification.
#[derive(Debug, Clone)]
pub struct Last {
    /// `None`: the whole frame.
    pub region: Option<RegionOf>,
    pub frame: u64,
    pub captured_at: SystemTime,
    pub model: Arc<ModelInfo>,
    pub top: Vec<Scored>,
}

impl Last {
    fn of(c: &Classification) -> Last {
        Last {
            region: c.region.clone(),
            frame: c.meta.index,
            captured_at: c.meta.captured_at,
            model: c.model.clone(),
            top: c.top.clone(),
        }
    }

    fn update(&mut self, c: &Classification) {
        self.region.clone_from(&c.region);
        self.frame = c.meta.index;
        self.captured_at = c.meta.captured_at;
        self.model = c.model.clone();
        self.top.clear();
        self.top.extend_from_slice(&c.top);
    }
}

/// A change of the whole frame's top-1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub at: SystemTime,
    pub frame: u64,
    pub index: usize,
    pub score: f32,
}

/// One sparkline point: what was published in `BUCKET` from `start`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: SystemTime,
    /// Frames classified (a frame and its regions count once).
    pub frames: u32,
    /// Sum of capture→publish ms of those frames' first results.
    pub latency_ms: f64,
}

/// What a camera has: its last results and recent latencies.
#[derive(Debug, Default)]
struct Recent {
    whole: Option<Last>,
    regions: Vec<Last>,
    /// (when published, capture→publish ms), oldest first.
    latency: VecDeque<(Instant, f32)>,
    changes: VecDeque<Change>,
    /// Oldest first, with the monotonic time each began.
    buckets: VecDeque<(Instant, Bucket)>,
    /// The last frame counted in `buckets`.
    counted: Option<u64>,
}

impl Recent {
    fn count(&mut self, c: &Classification, now: Instant) {
        if self.counted == Some(c.meta.index) {
            return;
        }
        self.counted = Some(c.meta.index);
        while self
            .buckets
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > HISTORY)
        {
            self.buckets.pop_front();
        }
        let current = self
            .buckets
            .back()
            .is_some_and(|(t, _)| now.duration_since(*t) < BUCKET);
        if !current {
            let start = SystemTime::now();
            let empty = Bucket {
                start,
                frames: 0,
                latency_ms: 0.0,
            };
            self.buckets.push_back((now, empty));
        }
        if let Some((_, b)) = self.buckets.back_mut() {
            b.frames += 1;
            b.latency_ms += c.latency.total;
        }
    }

    fn changed(&mut self, c: &Classification, now: SystemTime) {
        let Some(top1) = c.top.first() else { return };
        if self.changes.back().is_some_and(|l| l.index == top1.index) {
            return;
        }
        while self.changes.len() >= CHANGES_KEPT
            || self
                .changes
                .front()
                .is_some_and(|l| now.duration_since(l.at).unwrap_or_default() > HISTORY)
        {
            self.changes.pop_front();
        }
        self.changes.push_back(Change {
            at: c.meta.captured_at,
            frame: c.meta.index,
            index: top1.index,
            score: top1.score,
        });
    }
}

/// A camera's latest results as the admin API shows them.
#[derive(Debug, Clone)]
pub struct View {
    pub whole: Option<Last>,
    /// In the order the regions were first classified.
    pub regions: Vec<Last>,
    /// Capture→publish latency over the last minute, ms: (p50, p99, samples).
    pub latency_ms: Option<(f64, f64, usize)>,
}

/// A camera's last ten minutes: top-1 changes and sparkline points, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub changes: Vec<Change>,
    pub buckets: Vec<Bucket>,
    /// The model whose class names the changes' indices are.
    pub model: Option<Arc<ModelInfo>>,
}

/// The latest results of every camera, by camera index.
#[derive(Debug, Default)]
pub struct Results {
    cameras: PerCamera<Mutex<Recent>>,
}

impl Results {
    fn slot(&self, camera: usize) -> Arc<Mutex<Recent>> {
        self.cameras.get(camera)
    }

    /// Records a classification handed to the publisher.
    pub fn record(&self, c: &Classification) {
        let slot = self.slot(c.meta.camera);
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        let r = &mut *guard;
        let now = Instant::now();
        r.count(c, now);
        match &c.region {
            None => {
                r.changed(c, SystemTime::now());
                match &mut r.whole {
                    Some(last) => last.update(c),
                    empty => *empty = Some(Last::of(c)),
                }
            }
            Some(region) => {
                let same = |l: &&mut Last| l.region.as_ref().is_some_and(|x| x.name == region.name);
                match r.regions.iter_mut().find(same) {
                    Some(last) => last.update(c),
                    None => r.regions.push(Last::of(c)),
                }
            }
        }
        while r
            .latency
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > LATENCY_WINDOW)
            || r.latency.len() >= LATENCY_SAMPLES
        {
            r.latency.pop_front();
        }
        r.latency.push_back((now, c.latency.total as f32));
    }

    /// Forgets a camera's region results (it starts, or its regions changed: a region no
    /// longer configured must not linger).
    pub fn forget_regions(&self, camera: usize) {
        let slot = self.slot(camera);
        slot.lock()
            .unwrap_or_else(|e| e.into_inner())
            .regions
            .clear();
    }

    /// Camera `camera`'s last ten minutes.
    pub fn history(&self, camera: usize) -> History {
        let slot = self.slot(camera);
        let r = slot.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        let recent = |at: SystemTime| now.duration_since(at).unwrap_or_default() <= HISTORY;
        History {
            changes: r.changes.iter().filter(|c| recent(c.at)).copied().collect(),
            buckets: r
                .buckets
                .iter()
                .map(|(_, b)| *b)
                .filter(|b| recent(b.start))
                .collect(),
            model: r.whole.as_ref().map(|l| l.model.clone()),
        }
    }

    /// Camera `camera`'s latest results.
    pub fn view(&self, camera: usize) -> View {
        let slot = self.slot(camera);
        let r = slot.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut ms: Vec<f32> = r
            .latency
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= LATENCY_WINDOW)
            .map(|(_, ms)| *ms)
            .collect();
        ms.sort_by(f32::total_cmp);
        let at = |q: f64| f64::from(ms[((ms.len() - 1) as f64 * q).round() as usize]);
        View {
            whole: r.whole.clone(),
            regions: r.regions.clone(),
            latency_ms: (!ms.is_empty()).then(|| (at(0.5), at(0.99), ms.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{Labels, LabelsSource};
    use crate::messages::{FrameMeta, Latency};

    fn classification(
        camera: usize,
        frame: u64,
        region: Option<&str>,
        total: f64,
    ) -> Classification {
        Classification {
            meta: FrameMeta {
                camera,
                index: frame,
                captured_at: SystemTime::UNIX_EPOCH,
                captured: Instant::now(),
                dropped: 0,
            },
            region: region.map(|name| RegionOf {
                name: name.into(),
                input_rect: [0, 0, 8, 8],
            }),
            model: Arc::new(ModelInfo {
                name: "m".into(),
                labels: Labels::load(&LabelsSource::ImageNet).expect("labels"),
            }),
            top: vec![Scored {
                index: frame as usize,
                score: 0.5,
            }],
            latency: Latency {
                total,
                ..Latency::default()
            },
            batch: 1,
        }
    }

    #[test]
    fn keeps_the_last_of_the_frame_and_of_each_region_and_latency_percentiles() {
        let results = Results::default();
        assert!(
            results.view(3).whole.is_none(),
            "an unknown camera has nothing yet"
        );
        for (i, frame) in (0..100u64).enumerate() {
            results.record(&classification(1, frame, None, (i + 1) as f64));
            results.record(&classification(1, frame, Some("door"), 1.0));
        }
        results.record(&classification(1, 7, Some("gate"), 1.0));
        let v = results.view(1);
        assert_eq!(v.whole.as_ref().map(|l| l.frame), Some(99));
        assert_eq!(v.whole.as_ref().map(|l| l.top[0].index), Some(99));
        let regions: Vec<(&str, u64)> = v
            .regions
            .iter()
            .map(|l| (l.region.as_ref().map_or("", |r| r.name.as_ref()), l.frame))
            .collect();
        assert_eq!(regions, [("door", 99), ("gate", 7)]);
        // 100 whole-frame samples 1..=100 ms and 101 region samples of 1 ms.
        let (p50, p99, n) = v.latency_ms.expect("latency");
        assert_eq!((p50, n), (1.0, 201));
        assert_eq!(p99, 98.0);
        results.forget_regions(1);
        assert!(results.view(1).regions.is_empty());
        assert!(results.view(0).whole.is_none(), "cameras are apart");
    }

    #[test]
    fn the_timeline_keeps_top1_changes_and_the_buckets_count_each_frame_once() {
        let results = Results::default();
        let labels = [1usize, 1, 2, 2, 2, 1];
        for (frame, &label) in labels.iter().enumerate() {
            let mut c = classification(0, frame as u64, None, 10.0);
            c.top[0].index = label;
            c.meta.captured_at = SystemTime::now();
            results.record(&c);
            results.record(&classification(0, frame as u64, Some("door"), 30.0));
        }
        let h = results.history(0);
        let changes: Vec<(u64, usize)> = h.changes.iter().map(|c| (c.frame, c.index)).collect();
        assert_eq!(changes, [(0, 1), (2, 2), (5, 1)]);
        let frames: u32 = h.buckets.iter().map(|b| b.frames).sum();
        assert_eq!(frames, 6, "a frame and its region count once");
        let latency: f64 = h.buckets.iter().map(|b| b.latency_ms).sum();
        assert_eq!(latency, 60.0, "the frame's first result's latency");
        assert!(h.model.is_some());
        assert!(results.history(1).changes.is_empty());
    }
}
