//! What a camera's preprocess thread makes of each frame: the whole frame (unless
//! `full_frame = false`) and every region due at the frame's time, each an [`Input`].
//!
//! A region's plan depends on the frame's size and the model's input, so it is made once
//! per size and preprocessing generation, not per frame. A region that does not fit in the
//! frame is left out with its error (reported by the thread once, when the errors change);
//! the whole frame and the other regions go on. A region with an `fps` of its own has its
//! own gate on the frame's timeline; its schedule moves only when a frame it was in is
//! handed to inference, so a live camera's stale frame (replaced by a newer one) costs the
//! region nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use opencv::core::Mat;
use opencv::prelude::*;

use super::{PreprocessError, PreprocessSpec, Preprocessor, RegionConfig, RegionPlan};
use crate::gate::FpsGate;
use crate::messages::{Input, RegionOf};
use crate::pool::Pool;

/// A region error as reported: the region's name and why.
pub type RegionError = (Arc<str>, String);

/// What a camera classifies in each frame: the whole frame or not, and its regions.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetsConfig {
    pub full_frame: bool,
    pub regions: Vec<RegionConfig>,
    /// The camera's `fps` (0: every frame).
    pub camera_fps: f64,
}

impl TargetsConfig {
    /// Model inputs per classified frame when every region is due: the whole frame (if
    /// classified) and each region.
    pub fn per_frame(&self) -> usize {
        usize::from(self.full_frame) + self.regions.len()
    }

    /// The same without the regions named in `names`.
    pub fn without(&self, names: &[Arc<str>]) -> TargetsConfig {
        TargetsConfig {
            full_frame: self.full_frame,
            regions: self
                .regions
                .iter()
                .filter(|r| !names.iter().any(|n| n.as_ref() == r.name))
                .cloned()
                .collect(),
            camera_fps: self.camera_fps,
        }
    }

    /// Inferences per second asked for when frames arrive at `frame_fps` (the frames the
    /// camera's `fps` admits): the whole frame at that rate, each region at its own
    /// `fps` if lower.
    pub fn inference_demand(&self, frame_fps: f64) -> f64 {
        let whole = if self.full_frame { frame_fps } else { 0.0 };
        let regions: f64 = self
            .regions
            .iter()
            .map(|r| r.fps.map_or(frame_fps, |f| f.min(frame_fps)))
            .sum();
        whole + regions
    }
}

/// A running camera's [`TargetsConfig`], replaced by a reload that changes only its
/// regions (or `full_frame`): its threads pick the new one up at their next frame, and
/// the source stays open.
#[derive(Debug)]
pub struct TargetsCell {
    version: AtomicU64,
    value: Mutex<TargetsConfig>,
}

impl TargetsCell {
    pub fn new(config: TargetsConfig) -> TargetsCell {
        TargetsCell {
            version: AtomicU64::new(0),
            value: Mutex::new(config),
        }
    }

    /// Changes at every [`TargetsCell::replace`].
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn get(&self) -> (u64, TargetsConfig) {
        let value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        (self.version(), value.clone())
    }

    pub fn replace(&self, config: TargetsConfig) {
        let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        *value = config;
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

/// One region and what is kept for it between frames.
#[derive(Debug)]
struct Slot {
    config: RegionConfig,
    name: Arc<str>,
    gate: FpsGate,
    /// For the planned frame size: the plan, or why there is none.
    plan: Option<Result<RegionPlan, String>>,
    /// In the frame being prepared.
    included: bool,
}

/// The whole frame and the regions of one camera.
#[derive(Debug)]
pub struct Targets {
    full_frame: bool,
    regions: Vec<Slot>,
    /// How early a region's gate may take a frame: half the camera's frame interval.
    slack: f64,
    /// (width, height, preprocessing generation) the plans are for.
    planned: Option<(u32, u32, u64)>,
}

impl Targets {
    pub fn new(config: TargetsConfig) -> Targets {
        let TargetsConfig {
            full_frame,
            regions,
            camera_fps,
        } = config;
        let slack = if camera_fps > 0.0 {
            0.5 / camera_fps
        } else {
            0.0
        };
        let regions = regions
            .into_iter()
            .map(|config| Slot {
                name: Arc::from(config.name.as_str()),
                gate: FpsGate::new(config.fps.unwrap_or(0.0)),
                config,
                plan: None,
                included: false,
            })
            .collect();
        Targets {
            full_frame,
            regions,
            slack,
            planned: None,
        }
    }

    /// Plans every region for a `width`×`height` frame under `spec` unless already done;
    /// returns the regions' errors when it planned anew.
    fn plan(
        &mut self,
        spec: &PreprocessSpec,
        generation: u64,
        width: u32,
        height: u32,
    ) -> Option<Vec<RegionError>> {
        if self.planned == Some((width, height, generation)) {
            return None;
        }
        self.planned = Some((width, height, generation));
        let mut errors = Vec::new();
        for r in &mut self.regions {
            let c = &r.config;
            let pad = c.pad_rgb.unwrap_or_else(|| spec.normalize.mean_rgb());
            let plan = spec
                .plan_region(c.rect.resolve(width, height), c.fit, pad, width, height)
                .map_err(|e| e.to_string());
            if let Err(e) = &plan {
                errors.push((r.name.clone(), e.clone()));
            }
            r.plan = Some(plan);
        }
        Some(errors)
    }

    /// Prepares `image` (at `t` on the camera's timeline) into `inputs`: the whole frame
    /// first, then the regions due, in configuration order. Tensors come from `tensors`.
    /// Returns the regions' errors when they were planned anew (a new frame size or
    /// model input). An error is one that spoils the whole frame (not 8-bit BGR, smaller
    /// than the whole-frame crop); `inputs` then holds what was made before it.
    pub fn prepare(
        &mut self,
        pre: &mut Preprocessor,
        generation: u64,
        image: &Mat,
        t: f64,
        tensors: &Pool<Vec<f32>>,
        inputs: &mut Vec<Input>,
    ) -> Result<Option<Vec<RegionError>>, PreprocessError> {
        let spec = *pre.spec();
        let len = spec.tensor_len();
        let tensor = || {
            // Every element is written: a reused tensor needs no clearing.
            let mut v = tensors.take().unwrap_or_default();
            v.resize(len, 0.0);
            v
        };
        if self.full_frame {
            let started = Instant::now();
            let mut out = tensor();
            let made = pre.run_into(image, &mut out);
            inputs.push(Input {
                region: None,
                tensor: out,
                preprocess_ms: started.elapsed().as_secs_f64() * 1e3,
            });
            made?;
        }
        let (width, height) = (image.cols().max(0) as u32, image.rows().max(0) as u32);
        let errors = self.plan(&spec, generation, width, height);
        for r in &mut self.regions {
            r.included = false;
            let Some(Ok(plan)) = &r.plan else { continue };
            if !r.gate.due(t, self.slack) {
                continue;
            }
            let started = Instant::now();
            let mut out = tensor();
            let made = pre.run_region_into(image, plan, &mut out);
            inputs.push(Input {
                region: Some(RegionOf {
                    name: r.name.clone(),
                    input_rect: plan.input_rect.to_array(),
                }),
                tensor: out,
                preprocess_ms: started.elapsed().as_secs_f64() * 1e3,
            });
            made?;
            r.included = true;
        }
        Ok(errors)
    }

    /// The frame last prepared (at `t`) was handed to inference: the gates of the
    /// regions in it move on.
    pub fn handed_over(&mut self, t: f64) {
        for r in self.regions.iter_mut().filter(|r| r.included) {
            r.gate.admit(t, self.slack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::{Fit, Place, Rect};

    fn region(name: &str, fps: Option<f64>) -> RegionConfig {
        RegionConfig {
            name: name.into(),
            rect: Place::Pixels(Rect {
                x: 0,
                y: 0,
                width: 8,
                height: 8,
            }),
            fit: Fit::Crop,
            pad_rgb: None,
            fps,
        }
    }

    #[test]
    fn demand_counts_the_whole_frame_and_each_region_at_its_rate() {
        let t = TargetsConfig {
            full_frame: true,
            regions: vec![
                region("a", None),
                region("b", Some(1.0)),
                region("c", Some(9.0)),
            ],
            camera_fps: 5.0,
        };
        assert_eq!(t.per_frame(), 4);
        // 5 frames/s: the whole frame and a at 5, b at 1, c at most the frame rate.
        assert_eq!(t.inference_demand(5.0), 16.0);
        let rest = t.without(&[Arc::from("c")]);
        assert_eq!((rest.per_frame(), rest.inference_demand(5.0)), (3, 11.0));
        let regions_only = TargetsConfig {
            full_frame: false,
            ..rest
        };
        assert_eq!(
            (regions_only.per_frame(), regions_only.inference_demand(5.0)),
            (2, 6.0)
        );
    }
}
