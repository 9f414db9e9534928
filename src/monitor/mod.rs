//! What viewers see, shared by the stages that make it and the admin listener that shows
//! it: each camera's latest results and history ([`results`]), its last classified frame
//! while someone watches ([`frames`], rendered to JPEG by [`jpeg`]), and the event stream
//! behind `/api/events` ([`events`]). Nothing here ever makes a stage wait for a viewer.

pub mod events;
pub mod frames;
pub mod jpeg;
pub mod results;

use std::sync::{Arc, RwLock};

use opencv::core::Mat;

use crate::pool::Pool;

/// Everything the console and the API read.
#[derive(Debug)]
pub struct Monitor {
    pub results: results::Results,
    pub frames: frames::Frames,
    pub events: events::Events,
}

impl Monitor {
    /// Frames let go of go back to `images`.
    pub fn new(images: Pool<Mat>) -> Monitor {
        Monitor {
            results: results::Results::default(),
            frames: frames::Frames::new(images),
            events: events::Events::default(),
        }
    }

    /// The overlay for camera `camera`'s shot: the whole frame's top-1 and each region's,
    /// from the latest results.
    pub fn overlay(&self, camera: usize) -> jpeg::Overlay {
        let view = self.results.view(camera);
        let top1 = |l: &results::Last| {
            l.top
                .first()
                .map(|s| (l.model.labels.get(s.index).to_owned(), s.score))
        };
        jpeg::Overlay {
            label: view.whole.as_ref().and_then(top1),
            regions: view
                .regions
                .iter()
                .filter_map(|l| {
                    let r = l.region.as_ref()?;
                    Some(jpeg::Mark {
                        name: r.name.to_string(),
                        rect: r.input_rect,
                        top1: top1(l),
                    })
                })
                .collect(),
        }
    }
}

/// One `T` per camera index, made on first use (a reload adds cameras at new indices).
#[derive(Debug)]
pub struct PerCamera<T> {
    slots: RwLock<Vec<Arc<T>>>,
}

impl<T> Default for PerCamera<T> {
    fn default() -> Self {
        PerCamera {
            slots: RwLock::new(Vec::new()),
        }
    }
}

impl<T: Default> PerCamera<T> {
    /// Camera `camera`'s slot: a shared read when it exists, else the list is grown.
    pub fn get(&self, camera: usize) -> Arc<T> {
        if let Some(s) = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(camera)
        {
            return s.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        while slots.len() <= camera {
            slots.push(Arc::default());
        }
        slots[camera].clone()
    }
}
