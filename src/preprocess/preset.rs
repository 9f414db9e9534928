//! Named preprocessing recipes: what each family of models was trained and evaluated with.
//!
//! A preset fills every `[model.preprocess]` key; any key the user sets overrides it.

use serde::Deserialize;

use super::resample::Interpolation;

/// Channel order of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue (torchvision and most exports).
    Rgb,
    /// Blue, green, red (caffe-style models; OpenCV's native order).
    Bgr,
}

/// How 8-bit BGR pixels become model input values: reordered to `channel_order`, then
/// `(pixel × scale − mean) / std` per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub channel_order: ChannelOrder,
    /// Multiplies each 0..255 pixel before `mean`/`std` (1/255 for 0..1 models).
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Order of the resize and the center crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Resize the shorter side to `resize_shorter`, then center crop `crop` (torchvision).
    ResizeCrop,
    /// Center crop `crop_fraction` of the shorter side, then resize to `crop` (TensorFlow).
    CropResize,
}

/// The recipes streamclassd knows by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// torchvision's evaluation transform: `Resize(256)` (PIL bilinear, antialiased),
    /// `CenterCrop(224)`, `ToTensor` (RGB, 0..1), `Normalize(ImageNet mean, std)`.
    /// For torchvision's ResNet-18…152 exports and the ONNX model zoo's ResNet v1/v2.
    #[default]
    Torchvision,
    /// Caffe/Caffe2 style: the same geometry, BGR, 0..255 minus the per-channel ImageNet
    /// mean (B 103.939, G 116.779, R 123.68), no scaling. For the ONNX model zoo's Caffe2
    /// ResNet-50 (input `gpu_0/data_0`).
    Caffe,
    /// TensorFlow EfficientNet-Lite evaluation: center crop 224/256 of the shorter side,
    /// bicubic resize to 224, RGB, (x − 127) / 128.
    TfEfficientnetLite,
}

/// Every preprocessing value a preset defines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetValues {
    pub mode: ResizeMode,
    pub interpolation: Interpolation,
    /// Ratio of crop to resized shorter side (224/256 for all presets).
    pub crop_ratio: f64,
    pub normalize: Normalize,
}

/// ImageNet mean and standard deviation (RGB, 0..1), as torchvision normalizes.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preset {
    pub fn values(self) -> PresetValues {
        match self {
            Preset::Torchvision => PresetValues {
                mode: ResizeMode::ResizeCrop,
                interpolation: Interpolation::Bilinear,
                crop_ratio: 224.0 / 256.0,
                normalize: Normalize {
                    channel_order: ChannelOrder::Rgb,
                    scale: 1.0 / 255.0,
                    mean: IMAGENET_MEAN,
                    std: IMAGENET_STD,
                },
            },
            Preset::Caffe => PresetValues {
                mode: ResizeMode::ResizeCrop,
                interpolation: Interpolation::Bilinear,
                crop_ratio: 224.0 / 256.0,
                normalize: Normalize {
                    channel_order: ChannelOrder::Bgr,
                    scale: 1.0,
                    mean: [103.939, 116.779, 123.68],
                    std: [1.0, 1.0, 1.0],
                },
            },
            Preset::TfEfficientnetLite => PresetValues {
                mode: ResizeMode::CropResize,
                interpolation: Interpolation::Bicubic,
                crop_ratio: 224.0 / 256.0,
                normalize: Normalize {
                    channel_order: ChannelOrder::Rgb,
                    scale: 1.0,
                    mean: [127.0, 127.0, 127.0],
                    std: [128.0, 128.0, 128.0],
                },
            },
        }
    }
}
