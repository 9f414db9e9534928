//! The latest results per camera, for the admin API: each camera's last classification of
//! the whole frame and of each region, and its capture→publish latencies over the last
//! minute. The publisher records every classification (no allocation once a camera's slots
//! exist: the top-k lists are copied into kept buffers); the admin listener reads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::messages::{Classification, ModelInfo, RegionOf, Scored};

/// Latencies kept per camera: the last minute, at most this many.
const LATENCY_SAMPLES: usize = 4096;
const LATENCY_WINDOW: Duration = Duration::from_secs(60);

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

/// What a camera has: its last results and recent latencies.
#[derive(Debug, Default)]
struct Recent {
    whole: Option<Last>,
    regions: Vec<Last>,
    /// (when published, capture→publish ms), oldest first.
    latency: VecDeque<(Instant, f32)>,
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

/// The latest results of every camera, by camera index.
#[derive(Debug, Default)]
pub struct Results {
    cameras: RwLock<Vec<Arc<Mutex<Recent>>>>,
}

impl Results {
    fn slot(&self, camera: usize) -> Arc<Mutex<Recent>> {
        if let Some(s) = self
            .cameras
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(camera)
        {
            return s.clone();
        }
        let mut cameras = self.cameras.write().unwrap_or_else(|e| e.into_inner());
        while cameras.len() <= camera {
            cameras.push(Arc::default());
        }
        cameras[camera].clone()
    }

    /// Records a classification handed to the publisher.
    pub fn record(&self, c: &Classification) {
        let slot = self.slot(c.meta.camera);
        let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
        let r = &mut *guard;
        match &c.region {
            None => match &mut r.whole {
                Some(last) => last.update(c),
                empty => *empty = Some(Last::of(c)),
            },
            Some(region) => {
                let same = |l: &&mut Last| l.region.as_ref().is_some_and(|x| x.name == region.name);
                match r.regions.iter_mut().find(same) {
                    Some(last) => last.update(c),
                    None => r.regions.push(Last::of(c)),
                }
            }
        }
        let now = Instant::now();
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
}
