//! `[model.preprocess]`: the section as written ([`RawPreprocess`]) and the checked
//! [`PreprocessConfig`]: a preset's values with the user's overrides. What still depends on
//! the model (its input size and layout) is resolved when the model is loaded.

use serde::Deserialize;

use super::preset::{ChannelOrder, Normalize, Preset, ResizeMode};
use super::resample::Interpolation;
use crate::problems::Problems;

/// `[model.preprocess]`: a preset, and any of its values overridden.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    /// Named recipe: `torchvision` (default), `caffe`, `tf-efficientnet-lite`.
    #[serde(default)]
    pub preset: Preset,
    /// `resize-crop` (resize the shorter side, then center crop) or `crop-resize` (center
    /// crop a fraction of the shorter side, then resize).
    pub mode: Option<ResizeMode>,
    /// `resize-crop`: shorter side after resizing; default `crop * 256 / 224`.
    pub resize_shorter: Option<i64>,
    /// Side of the square model input; default the model's input size (224 if dynamic).
    pub crop: Option<i64>,
    /// `crop-resize`: fraction of the shorter side cut out before resizing; default 0.875.
    pub crop_fraction: Option<f64>,
    /// `bilinear`, `bicubic`, `area` or `nearest` (Pillow's antialiased filters).
    pub interpolation: Option<Interpolation>,
    /// Factor applied to each 0..255 pixel before `mean`/`std` (1/255 for 0..1 models).
    pub scale: Option<f64>,
    /// Per-channel mean subtracted after scaling, in the model's channel order.
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation divided by, in the model's channel order.
    pub std: Option<Vec<f64>>,
    /// Channel order the model expects: `rgb` or `bgr`.
    pub channel_order: Option<ChannelOrder>,
}

/// Preprocessing as configured. The crop size (and what derives from it) may still depend
/// on the model.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    pub preset: Preset,
    pub mode: ResizeMode,
    pub resize_shorter: Option<u32>,
    pub crop: Option<u32>,
    pub crop_fraction: Option<f64>,
    /// Crop / resized shorter side used when neither `resize_shorter` nor
    /// `crop_fraction` is given (the preset's, 224/256).
    pub crop_ratio: f64,
    pub interpolation: Interpolation,
    pub normalize: Normalize,
}

const F: &str = "model.preprocess";

impl RawPreprocess {
    pub fn check(self, p: &mut Problems) -> Option<PreprocessConfig> {
        let preset = self.preset.values();
        let mode = self.mode.unwrap_or(preset.mode);
        let crop = self
            .crop
            .and_then(|c| p.range(&format!("{F}.crop"), c, 8, 4096));
        let resize = self
            .resize_shorter
            .and_then(|r| p.range(&format!("{F}.resize_shorter"), r, 8, 8192));
        if let (Some(c), Some(r)) = (crop, resize) {
            if r < c {
                p.add(
                    format!("{F}.resize_shorter"),
                    format!("{r} is smaller than crop {c}"),
                );
            }
        }
        if mode == ResizeMode::CropResize && self.resize_shorter.is_some() {
            p.add(
                format!("{F}.resize_shorter"),
                "only used with mode = \"resize-crop\" (this preset/mode crops first)",
            );
        }
        if mode == ResizeMode::ResizeCrop && self.crop_fraction.is_some() {
            p.add(
                format!("{F}.crop_fraction"),
                "only used with mode = \"crop-resize\"; use resize_shorter",
            );
        }
        let crop_fraction = match self.crop_fraction {
            Some(f) if !(f > 0.0 && f <= 1.0) => {
                p.add(
                    format!("{F}.crop_fraction"),
                    format!("{f} must be in (0, 1]"),
                );
                None
            }
            other => other,
        };
        let defaults = preset.normalize;
        let scale = match self.scale {
            Some(s) if !(s.is_finite() && s > 0.0) => {
                p.add(format!("{F}.scale"), format!("{s} must be positive"));
                None
            }
            Some(s) => Some(s as f32),
            None => Some(defaults.scale),
        };
        let mean = triple(p, &format!("{F}.mean"), self.mean, defaults.mean, false);
        let std = triple(p, &format!("{F}.std"), self.std, defaults.std, true);
        Some(PreprocessConfig {
            preset: self.preset,
            mode,
            resize_shorter: resize.map(|r| r as u32),
            crop: crop.map(|c| c as u32),
            crop_fraction,
            crop_ratio: preset.crop_ratio,
            interpolation: self.interpolation.unwrap_or(preset.interpolation),
            normalize: Normalize {
                channel_order: self.channel_order.unwrap_or(defaults.channel_order),
                scale: scale?,
                mean: mean?,
                std: std?,
            },
        })
    }
}

/// Three per-channel values, each finite (and positive for a divisor).
fn triple(
    p: &mut Problems,
    field: &str,
    value: Option<Vec<f64>>,
    default: [f32; 3],
    positive: bool,
) -> Option<[f32; 3]> {
    let Some(v) = value else {
        return Some(default);
    };
    if v.len() != 3 {
        p.add(
            field,
            format!("expected 3 values (one per channel), got {}", v.len()),
        );
        return None;
    }
    if v.iter().any(|x| !x.is_finite() || (positive && *x <= 0.0)) {
        let what = if positive { "positive" } else { "finite" };
        p.add(field, format!("every value must be {what}: {v:?}"));
        return None;
    }
    Some([v[0] as f32, v[1] as f32, v[2] as f32])
}
