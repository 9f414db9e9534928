//! Stage 2: turn a decoded BGR frame into the model's input tensor.
//!
//! The recipe is torchvision's ResNet evaluation transform: resize so the shorter side is
//! `resize_shorter` (the longer side is truncated as torchvision computes it), center crop
//! `crop`×`crop` (offsets rounded half-to-even, as Python's `round`), reorder channels,
//! scale to 0..1, subtract `mean`, divide by `std`, lay out as planar CHW float32.
//!
//! [`Preprocessor::run_into`] is the whole stage for one frame and is what the unit tests
//! call; [`run`] is the thread loop around it.

use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use opencv::core::{Mat, Size};
use opencv::prelude::*;

use crate::config::ChannelOrder;
use crate::messages::{Frame, Prepared};

/// Fully resolved preprocessing parameters (model-dependent defaults already applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessSpec {
    pub resize_shorter: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub channel_order: ChannelOrder,
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

/// Crops, reorders, scales and normalizes packed 8-bit BGR pixels into planar CHW floats.
///
/// `pixels` holds rows of `stride` bytes; the window is `crop`×`crop` at `(x0, y0)`.
pub fn normalize_into(
    pixels: &[u8],
    stride: usize,
    (x0, y0): (usize, usize),
    spec: &PreprocessSpec,
    out: &mut [f32],
) {
    let crop = spec.crop as usize;
    let plane = crop * crop;
    debug_assert_eq!(out.len(), 3 * plane);
    // Output channel c reads source byte `src[c]` of each BGR pixel.
    let src: [usize; 3] = match spec.channel_order {
        ChannelOrder::Rgb => [2, 1, 0],
        ChannelOrder::Bgr => [0, 1, 2],
    };
    let mut scale = [0f32; 3];
    let mut bias = [0f32; 3];
    for c in 0..3 {
        scale[c] = 1.0 / (255.0 * spec.std[c]);
        bias[c] = -spec.mean[c] / spec.std[c];
    }
    let (first, rest) = out.split_at_mut(plane);
    let (second, third) = rest.split_at_mut(plane);
    for y in 0..crop {
        let row_start = (y0 + y) * stride + x0 * 3;
        let row = &pixels[row_start..row_start + crop * 3];
        let o = y * crop;
        for (x, px) in row.chunks_exact(3).enumerate() {
            first[o + x] = f32::from(px[src[0]]) * scale[0] + bias[0];
            second[o + x] = f32::from(px[src[1]]) * scale[1] + bias[1];
            third[o + x] = f32::from(px[src[2]]) * scale[2] + bias[2];
        }
    }
}

/// Per-camera preprocessor; keeps its resize buffer between frames.
pub struct Preprocessor {
    spec: PreprocessSpec,
    resized: Mat,
}

impl Preprocessor {
    pub fn new(spec: PreprocessSpec) -> Self {
        Self {
            spec,
            resized: Mat::default(),
        }
    }

    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Preprocesses one BGR frame into `out` (length [`PreprocessSpec::tensor_len`]).
    pub fn run_into(&mut self, image: &Mat, out: &mut [f32]) -> Result<(), PreprocessError> {
        let (w, h) = (image.cols(), image.rows());
        if image.typ() != opencv::core::CV_8UC3 || w <= 0 || h <= 0 {
            return Err(PreprocessError::UnsupportedFrame {
                width: w,
                height: h,
                channels: image.channels(),
            });
        }
        let (rw, rh) = resized_size(w as u32, h as u32, self.spec.resize_shorter);
        let source: &Mat = if (rw, rh) == (w as u32, h as u32) && image.is_continuous() {
            image
        } else {
            opencv::imgproc::resize(
                image,
                &mut self.resized,
                Size::new(rw as i32, rh as i32),
                0.0,
                0.0,
                opencv::imgproc::INTER_LINEAR,
            )?;
            &self.resized
        };
        let crop = self.spec.crop;
        if rw < crop || rh < crop {
            return Err(PreprocessError::UnsupportedFrame {
                width: w,
                height: h,
                channels: 3,
            });
        }
        let (x0, y0) = crop_origin(rw, rh, crop);
        normalize_into(
            source.data_bytes()?,
            rw as usize * 3,
            (x0 as usize, y0 as usize),
            &self.spec,
            out,
        );
        Ok(())
    }
}

/// The preprocess thread of one camera: frames in, tensors out, until the capture side
/// hangs up. Sending blocks: the inference edge is where live cameras wait, while their
/// capture edge keeps only the newest frame.
pub fn run(mut pre: Preprocessor, rx: Receiver<Frame>, tx: Sender<Prepared>) {
    let len = pre.spec().tensor_len();
    for frame in rx {
        let started = Instant::now();
        let mut tensor = vec![0f32; len];
        if let Err(e) = pre.run_into(&frame.image, &mut tensor) {
            tracing::warn!(camera = %frame.camera_id, frame = frame.index, error = %e, "frame skipped");
            continue;
        }
        let prepared = Prepared {
            preprocess_ms: started.elapsed().as_secs_f64() * 1e3,
            prepared_at: Instant::now(),
            tensor,
            meta: frame.meta(),
        };
        if tx.send(prepared).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, CV_8UC3};

    fn spec(resize: u32, crop: u32, order: ChannelOrder) -> PreprocessSpec {
        PreprocessSpec {
            resize_shorter: resize,
            crop,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            channel_order: order,
        }
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
    fn normalizes_and_crops_a_known_image() {
        // 4x3 BGR image; pixel (x, y) = (b, g, r) = (10x+y, 100+y, 200+x).
        let (w, h) = (4usize, 3usize);
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                px.extend_from_slice(&[(10 * x + y) as u8, (100 + y) as u8, (200 + x) as u8]);
            }
        }
        let s = spec(3, 2, ChannelOrder::Rgb);
        let mut out = vec![0f32; s.tensor_len()];
        // crop 2x2 of 4x3: origin (1, 0) after half-to-even rounding of 1.0 and 0.5.
        assert_eq!(crop_origin(4, 3, 2), (1, 0));
        normalize_into(&px, w * 3, (1, 0), &s, &mut out);
        let expect = |v: u8, c: usize| (f32::from(v) / 255.0 - s.mean[c]) / s.std[c];
        for y in 0..2 {
            for x in 0..2 {
                let (sx, sy) = (x + 1, y);
                let (b, g, r) = ((10 * sx + sy) as u8, (100 + sy) as u8, (200 + sx) as u8);
                let i = y * 2 + x;
                assert!((out[i] - expect(r, 0)).abs() < 1e-5);
                assert!((out[4 + i] - expect(g, 1)).abs() < 1e-5);
                assert!((out[8 + i] - expect(b, 2)).abs() < 1e-5);
            }
        }
        let bgr = spec(3, 2, ChannelOrder::Bgr);
        normalize_into(&px, w * 3, (1, 0), &bgr, &mut out);
        assert!((out[0] - (10.0 / 255.0 - bgr.mean[0]) / bgr.std[0]).abs() < 1e-5);
    }

    #[test]
    fn uniform_frame_stays_uniform_through_resize_and_crop() {
        let image =
            Mat::new_rows_cols_with_default(72, 128, CV_8UC3, Scalar::new(30.0, 60.0, 90.0, 0.0))
                .expect("mat");
        let s = spec(32, 28, ChannelOrder::Rgb);
        let mut pre = Preprocessor::new(s);
        let mut out = vec![0f32; s.tensor_len()];
        pre.run_into(&image, &mut out).expect("preprocess");
        let plane = 28 * 28;
        for (c, v) in [90.0f32, 60.0, 30.0].into_iter().enumerate() {
            let want = (v / 255.0 - s.mean[c]) / s.std[c];
            assert!(out[c * plane..(c + 1) * plane]
                .iter()
                .all(|x| (x - want).abs() < 1e-5));
        }
    }

    #[test]
    fn rejects_frames_that_are_not_bgr() {
        let gray = Mat::new_rows_cols_with_default(10, 10, opencv::core::CV_8UC1, Scalar::all(0.0))
            .expect("mat");
        let s = spec(8, 8, ChannelOrder::Rgb);
        let mut out = vec![0f32; s.tensor_len()];
        assert!(matches!(
            Preprocessor::new(s).run_into(&gray, &mut out),
            Err(PreprocessError::UnsupportedFrame { channels: 1, .. })
        ));
    }
}
