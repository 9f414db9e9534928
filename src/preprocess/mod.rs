//! Stage 2: turn a decoded BGR frame into the model's input tensor.
//!
//! Two geometries:
//! - `resize-crop` (torchvision's evaluation transform): resize so the shorter side is
//!   `resize_shorter` (the longer side truncated as torchvision computes it), then center
//!   crop `crop`×`crop` (offsets rounded half-to-even, as Python's `round`);
//! - `crop-resize` (TensorFlow's EfficientNet evaluation): center crop the square of side
//!   `floor(crop_fraction × shorter side)` (offsets `(size - side + 1) / 2`), then resize
//!   it to `crop`×`crop`.
//!
//! Resizing is Pillow's antialiased resampling, bit for bit ([`resample`]). Then channels
//! are reordered, each value becomes `(pixel × scale − mean) / std`, and the result is laid
//! out as the model wants it (planar CHW or interleaved HWC), float32.
//!
//! [`Preprocessor::run_into`] is the whole stage for one frame and is what the unit tests
//! call; [`Preprocess::run`] is the thread loop around it.

mod config;
pub mod preset;
pub mod region;
mod region_config;
pub mod resample;
mod stage;
mod targets;

use opencv::core::Mat;
use opencv::prelude::*;

pub use config::{PreprocessConfig, RawPreprocess};
pub use preset::{ChannelOrder, Normalize, Preset, ResizeMode, IMAGENET_MEAN, IMAGENET_STD};
pub use region::{Fit, Place, Rect, RegionPlan};
pub use region_config::{check_regions, RawRegion, RegionConfig};
pub use resample::Interpolation;
use resample::{Resampler, View, Window};
pub use stage::{Pools, Preprocess, SpecCell};
pub use targets::{RegionError, Targets, TargetsCell, TargetsConfig};

/// Memory layout of one image in the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Planar: all of channel 0, then channel 1, then channel 2 (`[N,3,H,W]`).
    Nchw,
    /// Interleaved: three channels per pixel (`[N,H,W,3]`).
    Nhwc,
}

/// Geometry of the preprocessing, with every model-dependent value resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Geometry {
    ResizeCrop { resize_shorter: u32 },
    CropResize { crop_fraction: f64 },
}

/// Fully resolved preprocessing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessSpec {
    pub geometry: Geometry,
    pub crop: u32,
    pub interpolation: Interpolation,
    pub normalize: Normalize,
    pub layout: Layout,
}

impl PreprocessSpec {
    /// Number of f32 values in one preprocessed frame (3 × crop × crop).
    pub fn tensor_len(&self) -> usize {
        3 * self.crop as usize * self.crop as usize
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("frame is {width}x{height} with {channels} channel(s); expected 8-bit BGR")]
    UnsupportedFrame {
        width: i32,
        height: i32,
        channels: i32,
    },
    #[error("frame {width}x{height} is too small for a {crop}x{crop} crop")]
    TooSmall { width: u32, height: u32, crop: u32 },
    #[error("region {rect:?} (x, y, width, height) is not inside the {width}x{height} frame")]
    RegionOutside {
        rect: [u32; 4],
        width: u32,
        height: u32,
    },
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// Size after resizing so that the shorter side is `shorter`; the longer side is
/// `int(shorter * long / short)`, exactly as torchvision's `Resize(int)` computes it.
pub fn resized_size(width: u32, height: u32, shorter: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (u64::from(shorter) * u64::from(long) / u64::from(short.max(1))) as u32;
    if width <= height {
        (shorter, new_long)
    } else {
        (new_long, shorter)
    }
}

/// Top-left corner of a centered `crop`×`crop` window, rounded half-to-even like
/// torchvision's `int(round((size - crop) / 2.0))`.
pub fn crop_origin(width: u32, height: u32, crop: u32) -> (u32, u32) {
    let half = |size: u32| -> u32 {
        let d = size.saturating_sub(crop);
        // d/2 is exact or ends in .5; .5 rounds to the even neighbour.
        let (q, r) = (d / 2, d % 2);
        if r == 1 && q % 2 == 1 {
            q + 1
        } else {
            q
        }
    };
    (half(width), half(height))
}

/// The centered square that `crop-resize` cuts from a `width`×`height` frame, as
/// TensorFlow's EfficientNet evaluation does: side `floor(fraction × shorter side)`,
/// offsets `(size - side + 1) / 2`. Returns (x, y, side).
pub fn center_square(width: u32, height: u32, fraction: f64) -> (u32, u32, u32) {
    let side = ((f64::from(width.min(height)) * fraction) as u32).max(1);
    (
        (width - side).div_ceil(2),
        (height - side).div_ceil(2),
        side,
    )
}

/// Where the crop comes from: the source region that is resized, the size it is resized
/// to, and the window of that resize which is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Source region (x, y, cols, rows).
    pub source: (u32, u32, u32, u32),
    /// Size the source region is resized to.
    pub resized: (u32, u32),
    /// Part of the resized image that is kept.
    pub window: Window,
}

impl PreprocessSpec {
    /// Plans the geometry for a `width`×`height` frame.
    pub fn plan(&self, width: u32, height: u32) -> Result<Plan, PreprocessError> {
        let crop = self.crop;
        let too_small = PreprocessError::TooSmall {
            width,
            height,
            crop,
        };
        match self.geometry {
            Geometry::ResizeCrop { resize_shorter } => {
                let (rw, rh) = resized_size(width, height, resize_shorter);
                if rw < crop || rh < crop {
                    return Err(too_small);
                }
                let (x, y) = crop_origin(rw, rh, crop);
                Ok(Plan {
                    source: (0, 0, width, height),
                    resized: (rw, rh),
                    window: Window {
                        x: x as usize,
                        y: y as usize,
                        cols: crop as usize,
                        rows: crop as usize,
                    },
                })
            }
            Geometry::CropResize { crop_fraction } => {
                if width == 0 || height == 0 {
                    return Err(too_small);
                }
                let (x, y, side) = center_square(width, height, crop_fraction);
                Ok(Plan {
                    source: (x, y, side, side),
                    resized: (crop, crop),
                    window: Window {
                        x: 0,
                        y: 0,
                        cols: crop as usize,
                        rows: crop as usize,
                    },
                })
            }
        }
    }
}

/// Reorders, scales and normalizes packed 8-bit BGR pixels (`crop`×`crop`, rows of
/// `crop * 3` bytes) into the model's float layout.
pub fn normalize_into(pixels: &[u8], spec: &PreprocessSpec, out: &mut [f32]) {
    let plane = spec.crop as usize * spec.crop as usize;
    debug_assert_eq!(out.len(), 3 * plane);
    debug_assert_eq!(pixels.len(), 3 * plane);
    let n = &spec.normalize;
    // Output channel c reads source byte `src[c]` of each BGR pixel.
    let src: [usize; 3] = match n.channel_order {
        ChannelOrder::Rgb => [2, 1, 0],
        ChannelOrder::Bgr => [0, 1, 2],
    };
    let mut mul = [0f32; 3];
    let mut add = [0f32; 3];
    for c in 0..3 {
        mul[c] = n.scale / n.std[c];
        add[c] = -n.mean[c] / n.std[c];
    }
    match spec.layout {
        Layout::Nchw => {
            let (first, rest) = out.split_at_mut(plane);
            let (second, third) = rest.split_at_mut(plane);
            for (i, px) in pixels.chunks_exact(3).enumerate() {
                first[i] = f32::from(px[src[0]]) * mul[0] + add[0];
                second[i] = f32::from(px[src[1]]) * mul[1] + add[1];
                third[i] = f32::from(px[src[2]]) * mul[2] + add[2];
            }
        }
        Layout::Nhwc => {
            for (o, px) in out.chunks_exact_mut(3).zip(pixels.chunks_exact(3)) {
                o[0] = f32::from(px[src[0]]) * mul[0] + add[0];
                o[1] = f32::from(px[src[1]]) * mul[1] + add[1];
                o[2] = f32::from(px[src[2]]) * mul[2] + add[2];
            }
        }
    }
}

/// The bytes of an 8-bit BGR image with its width and height, or why it cannot be
/// preprocessed.
fn bgr_bytes(image: &Mat) -> Result<(&[u8], u32, u32), PreprocessError> {
    let (w, h) = (image.cols(), image.rows());
    if image.typ() != opencv::core::CV_8UC3 || w <= 0 || h <= 0 || !image.is_continuous() {
        return Err(PreprocessError::UnsupportedFrame {
            width: w,
            height: h,
            channels: image.channels(),
        });
    }
    Ok((image.data_bytes()?, w as u32, h as u32))
}

/// Per-camera preprocessor; keeps its resampling tables and buffers between frames.
pub struct Preprocessor {
    spec: PreprocessSpec,
    resampler: Resampler,
    pixels: Vec<u8>,
    /// `pad`: the spare buffer the region is resized into or composed onto.
    canvas: Vec<u8>,
}

impl Preprocessor {
    pub fn new(spec: PreprocessSpec) -> Self {
        Self {
            spec,
            resampler: Resampler::default(),
            pixels: Vec::new(),
            canvas: Vec::new(),
        }
    }

    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Preprocesses one BGR frame into `out` (length [`PreprocessSpec::tensor_len`]).
    pub fn run_into(&mut self, image: &Mat, out: &mut [f32]) -> Result<(), PreprocessError> {
        let (bgr, w, h) = bgr_bytes(image)?;
        self.run_on_bytes(bgr, w, h, out)
    }

    /// Preprocesses packed BGR bytes (`width * 3` per row).
    pub fn run_on_bytes(
        &mut self,
        bgr: &[u8],
        width: u32,
        height: u32,
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        let plan = self.spec.plan(width, height)?;
        self.run_plan(bgr, width, &plan, None, out);
        Ok(())
    }

    /// Preprocesses the region of `image` that `region` plans (for this frame's size).
    pub fn run_region_into(
        &mut self,
        image: &Mat,
        region: &RegionPlan,
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        let (bgr, width, height) = bgr_bytes(image)?;
        // A plan made for another frame size must not read outside this frame.
        let (x, y, cols, rows) = region.plan.source;
        let source = Rect {
            x,
            y,
            width: cols,
            height: rows,
        };
        if !source.fits_in(width, height) {
            return Err(PreprocessError::RegionOutside {
                rect: source.to_array(),
                width,
                height,
            });
        }
        self.run_plan(bgr, width, &region.plan, region.canvas.as_ref(), out);
        Ok(())
    }

    /// The resized (and, for `pad`, composed) pixels of the last frame or region, packed
    /// BGR: what was normalized into the tensor.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Resizes `plan.source` of a packed BGR frame `width` pixels wide, places it on
    /// `canvas` if given, and normalizes the result into `out`.
    fn run_plan(
        &mut self,
        bgr: &[u8],
        width: u32,
        plan: &Plan,
        canvas: Option<&region::Canvas>,
        out: &mut [f32],
    ) {
        let stride = width as usize * 3;
        let (sx, sy, cols, rows) = plan.source;
        let view = View {
            pixels: &bgr[sy as usize * stride + sx as usize * 3..],
            stride,
            cols: cols as usize,
            rows: rows as usize,
        };
        let resized = (plan.resized.0 as usize, plan.resized.1 as usize);
        self.resampler.resize(
            view,
            resized,
            plan.window,
            self.spec.interpolation,
            &mut self.pixels,
        );
        if let Some(c) = canvas {
            let size = (plan.window.cols, plan.window.rows);
            region::compose(&self.pixels, size, c, &mut self.canvas);
            // `pixels` holds what is normalized; the resized region is the spare buffer.
            std::mem::swap(&mut self.pixels, &mut self.canvas);
        }
        normalize_into(&self.pixels, &self.spec, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, CV_8UC3};

    fn spec(geometry: Geometry, crop: u32, order: ChannelOrder, layout: Layout) -> PreprocessSpec {
        PreprocessSpec {
            geometry,
            crop,
            interpolation: Interpolation::Bilinear,
            normalize: Normalize {
                channel_order: order,
                scale: 1.0 / 255.0,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
            },
            layout,
        }
    }

    #[test]
    fn a_spec_cell_moves_to_a_new_generation_only_when_the_spec_changes() {
        let cell = SpecCell::new(torchvision(256, 224));
        assert_eq!(cell.generation(), 0);
        assert_eq!(cell.generation_for(&torchvision(256, 224)), 0);
        assert_eq!(
            cell.replace(torchvision(256, 224)),
            0,
            "same spec, same frames"
        );
        assert_eq!(cell.generation_for(&torchvision(320, 288)), 1);
        assert_eq!(cell.replace(torchvision(320, 288)), 1);
        assert_eq!(cell.generation(), 1);
        assert_eq!(cell.get(), (1, torchvision(320, 288)));
    }

    fn torchvision(resize: u32, crop: u32) -> PreprocessSpec {
        spec(
            Geometry::ResizeCrop {
                resize_shorter: resize,
            },
            crop,
            ChannelOrder::Rgb,
            Layout::Nchw,
        )
    }

    #[test]
    fn resize_geometry_matches_torchvision() {
        assert_eq!(resized_size(1280, 720, 256), (455, 256));
        assert_eq!(resized_size(720, 1280, 256), (256, 455));
        assert_eq!(resized_size(640, 480, 256), (341, 256));
        assert_eq!(resized_size(500, 500, 256), (256, 256));
        assert_eq!(resized_size(100, 50, 256), (512, 256));
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        // (455-224)/2 = 115.5 -> 116; (341-224)/2 = 58.5 -> 58; (257-224)/2 = 16.5 -> 16
        assert_eq!(crop_origin(455, 256, 224), (116, 16));
        assert_eq!(crop_origin(341, 256, 224), (58, 16));
        assert_eq!(crop_origin(257, 257, 224), (16, 16));
        assert_eq!(crop_origin(224, 224, 224), (0, 0));
    }

    #[test]
    fn center_square_follows_tensorflow() {
        // int(0.875 * 720) = 630; offsets (1280-630+1)//2 = 325, (720-630+1)//2 = 45
        assert_eq!(center_square(1280, 720, 0.875), (325, 45, 630));
        // int(0.875 * 361) = 315; (361-315+1)//2 = 23
        assert_eq!(center_square(361, 500, 0.875), (23, 93, 315));
        let s = spec(
            Geometry::CropResize {
                crop_fraction: 0.875,
            },
            224,
            ChannelOrder::Rgb,
            Layout::Nchw,
        );
        let plan = s.plan(1280, 720).expect("plan");
        assert_eq!(plan.source, (325, 45, 630, 630));
        assert_eq!(plan.resized, (224, 224));
    }

    #[test]
    fn normalizes_a_known_image_in_both_layouts_and_orders() {
        // 2x2 BGR image; pixel i = (b, g, r) = (10i, 100+i, 200+i).
        let px: Vec<u8> = (0..4u8).flat_map(|i| [10 * i, 100 + i, 200 + i]).collect();
        let s = spec(
            Geometry::ResizeCrop { resize_shorter: 2 },
            2,
            ChannelOrder::Rgb,
            Layout::Nchw,
        );
        let n = s.normalize;
        let expect = |v: u8, c: usize| (f32::from(v) / 255.0 - n.mean[c]) / n.std[c];
        let mut out = vec![0f32; 12];
        normalize_into(&px, &s, &mut out);
        for i in 0..4u8 {
            let j = usize::from(i);
            assert!((out[j] - expect(200 + i, 0)).abs() < 1e-5);
            assert!((out[4 + j] - expect(100 + i, 1)).abs() < 1e-5);
            assert!((out[8 + j] - expect(10 * i, 2)).abs() < 1e-5);
        }
        let nhwc = PreprocessSpec {
            layout: Layout::Nhwc,
            ..s
        };
        normalize_into(&px, &nhwc, &mut out);
        assert!((out[3] - expect(201, 0)).abs() < 1e-5);
        assert!((out[5] - expect(10, 2)).abs() < 1e-5);
        // Caffe-style: BGR, 0..255 minus mean.
        let caffe = PreprocessSpec {
            normalize: Normalize {
                channel_order: ChannelOrder::Bgr,
                scale: 1.0,
                mean: [100.0, 110.0, 120.0],
                std: [1.0, 1.0, 1.0],
            },
            ..s
        };
        normalize_into(&px, &caffe, &mut out);
        assert_eq!(&out[..4], &[-100.0, -90.0, -80.0, -70.0]);
        assert_eq!(out[8], 80.0);
    }

    #[test]
    fn uniform_frame_stays_uniform_through_resize_and_crop() {
        let image =
            Mat::new_rows_cols_with_default(72, 128, CV_8UC3, Scalar::new(30.0, 60.0, 90.0, 0.0))
                .expect("mat");
        let s = torchvision(32, 28);
        let mut pre = Preprocessor::new(s);
        let mut out = vec![0f32; s.tensor_len()];
        pre.run_into(&image, &mut out).expect("preprocess");
        let plane = 28 * 28;
        for (c, v) in [90.0f32, 60.0, 30.0].into_iter().enumerate() {
            let want = (v / 255.0 - s.normalize.mean[c]) / s.normalize.std[c];
            assert!(out[c * plane..(c + 1) * plane]
                .iter()
                .all(|x| (x - want).abs() < 1e-5));
        }
    }

    #[test]
    fn crop_takes_the_center_of_the_resized_frame() {
        // 8x4 frame whose columns are 0,10,..,70 (all channels); resize_shorter 4 keeps
        // the size, crop 4 takes columns 2..6 (offset (8-4)/2 = 2).
        let bgr: Vec<u8> = (0..4)
            .flat_map(|_| (0..8u8).flat_map(|x| [10 * x; 3]))
            .collect();
        let base = torchvision(4, 4);
        let s = PreprocessSpec {
            normalize: Normalize {
                scale: 1.0,
                mean: [0.0; 3],
                std: [1.0; 3],
                ..base.normalize
            },
            ..base
        };
        let mut out = vec![0f32; s.tensor_len()];
        Preprocessor::new(s)
            .run_on_bytes(&bgr, 8, 4, &mut out)
            .expect("preprocess");
        assert_eq!(&out[..4], &[20.0, 30.0, 40.0, 50.0]);
    }

    #[test]
    fn rejects_frames_that_are_not_bgr_or_too_small() {
        let gray = Mat::new_rows_cols_with_default(10, 10, opencv::core::CV_8UC1, Scalar::all(0.0))
            .expect("mat");
        let s = torchvision(8, 8);
        let mut out = vec![0f32; s.tensor_len()];
        assert!(matches!(
            Preprocessor::new(s).run_into(&gray, &mut out),
            Err(PreprocessError::UnsupportedFrame { channels: 1, .. })
        ));
        let s = torchvision(8, 16);
        assert!(matches!(
            s.plan(100, 100),
            Err(PreprocessError::TooSmall { crop: 16, .. })
        ));
    }
}
