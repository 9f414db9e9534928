//! Regions of interest: the part of a frame a region classifies, and how it is fit to the
//! model's square input.
//!
//! The region is cut from the decoded frame first, then:
//! - `crop`: the preset's own geometry applied to the region as if it were the whole
//!   frame (`resize-crop`: shorter side to `resize_shorter`, center crop; `crop-resize`:
//!   center square, resized);
//! - `stretch`: resized straight to the model's S×S input, aspect ignored;
//! - `pad` (letterbox): resized so its longer side is S and its shorter side
//!   `floor(short × S / long + 0.5)` (at least 1), placed on an S×S canvas of the pad
//!   colour at offset `floor((S − scaled) / 2)` along the short axis.
//!
//! Every resize is the preset's interpolation with Pillow's resampling, as for whole
//! frames. [`RegionPlan::input_rect`] is the part of the source frame the model sees.

use serde::Deserialize;

use super::resample::Window;
use super::{ChannelOrder, Normalize, Plan, PreprocessError, PreprocessSpec};

/// How a region is fit to the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// The preset's geometry, applied to the region as if it were the whole frame.
    #[default]
    Crop,
    /// Letterboxed onto a square of the pad colour.
    Pad,
    /// Resized to the square, aspect ignored.
    Stretch,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Crop => "crop",
            Fit::Pad => "pad",
            Fit::Stretch => "stretch",
        }
    }
}

/// A rectangle of the source frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// Whether the rectangle lies inside a `width`×`height` frame.
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        self.width > 0
            && self.height > 0
            && u64::from(self.x) + u64::from(self.width) <= u64::from(width)
            && u64::from(self.y) + u64::from(self.height) <= u64::from(height)
    }

    /// `[x, y, width, height]`.
    pub fn to_array(self) -> [u32; 4] {
        [self.x, self.y, self.width, self.height]
    }
}

/// Where a region is: in pixels, or in fractions of the frame (`[x, y, width, height]`,
/// each 0..1), resolved once the frame's size is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    Pixels(Rect),
    Fraction([f64; 4]),
}

impl Place {
    /// The region in pixels of a `width`×`height` frame. A fraction's edges are rounded
    /// to the nearest pixel (halves up: `floor(f × size + 0.5)`), clamped to the frame,
    /// and the region is at least one pixel wide and high.
    pub fn resolve(&self, width: u32, height: u32) -> Rect {
        let [fx, fy, fw, fh] = match self {
            Place::Pixels(r) => return *r,
            Place::Fraction(f) => *f,
        };
        let edges = |f0: f64, f1: f64, size: u32| {
            let at = |f: f64| ((f * f64::from(size) + 0.5).floor().max(0.0) as u32).min(size);
            let start = at(f0).min(size.saturating_sub(1));
            (start, at(f1).max(start + 1) - start)
        };
        let (x, w) = edges(fx, fx + fw, width);
        let (y, h) = edges(fy, fy + fh, height);
        Rect {
            x,
            y,
            width: w,
            height: h,
        }
    }
}

/// Where a letterboxed image lies on its square canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    /// The canvas' side (the model's input size).
    pub side: u32,
    /// Offset of the resized region on the canvas.
    pub x: u32,
    pub y: u32,
    /// The padding, as packed BGR bytes (the order frames are in).
    pub bgr: [u8; 3],
}

/// The geometry of one region for one frame size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionPlan {
    /// The resize, with its source in frame coordinates.
    pub plan: Plan,
    /// `pad` only: the canvas the resized region is placed on.
    pub canvas: Option<Canvas>,
    /// The part of the source frame the model sees, in source pixels: for `crop` the
    /// kept window mapped back (rounded to the nearest pixel), for `pad` and `stretch`
    /// the whole region.
    pub input_rect: Rect,
}

/// `floor(short × side / long + 0.5)`, at least 1: the shorter side of a letterboxed
/// region.
pub fn letterboxed(short: u32, long: u32, side: u32) -> u32 {
    let long = u64::from(long.max(1));
    let scaled = (2 * u64::from(short) * u64::from(side) + long) / (2 * long);
    (scaled as u32).max(1)
}

/// `a × b / c` rounded to the nearest integer (halves up).
fn scale_round(a: u32, b: u32, c: u32) -> u32 {
    let c = u64::from(c.max(1));
    ((2 * u64::from(a) * u64::from(b) + c) / (2 * c)) as u32
}

impl Normalize {
    /// The pixel (RGB, 0..255) that normalizes to zero in every channel: the preset's
    /// mean, as a colour (the default padding).
    pub fn mean_rgb(&self) -> [u8; 3] {
        let px = |c: usize| (self.mean[c] / self.scale).round().clamp(0.0, 255.0) as u8;
        match self.channel_order {
            ChannelOrder::Rgb => [px(0), px(1), px(2)],
            ChannelOrder::Bgr => [px(2), px(1), px(0)],
        }
    }
}

impl PreprocessSpec {
    /// Plans `rect` of a `width`×`height` frame, fit with `fit` (padding `pad_rgb`).
    pub fn plan_region(
        &self,
        rect: Rect,
        fit: Fit,
        pad_rgb: [u8; 3],
        width: u32,
        height: u32,
    ) -> Result<RegionPlan, PreprocessError> {
        if !rect.fits_in(width, height) {
            return Err(PreprocessError::RegionOutside {
                rect: rect.to_array(),
                width,
                height,
            });
        }
        let side = self.crop;
        let whole = |cols: u32, rows: u32| Window {
            x: 0,
            y: 0,
            cols: cols as usize,
            rows: rows as usize,
        };
        let source = (rect.x, rect.y, rect.width, rect.height);
        match fit {
            Fit::Crop => {
                let inner = self.plan(rect.width, rect.height)?;
                let (sx, sy, cols, rows) = inner.source;
                let (rw, rh) = inner.resized;
                let w = inner.window;
                // The kept window, back in source pixels of the part that was resized.
                let x0 = scale_round(w.x as u32, cols, rw);
                let y0 = scale_round(w.y as u32, rows, rh);
                let x1 = scale_round((w.x + w.cols) as u32, cols, rw);
                let y1 = scale_round((w.y + w.rows) as u32, rows, rh);
                Ok(RegionPlan {
                    plan: Plan {
                        source: (rect.x + sx, rect.y + sy, cols, rows),
                        ..inner
                    },
                    canvas: None,
                    input_rect: Rect {
                        x: rect.x + sx + x0,
                        y: rect.y + sy + y0,
                        width: x1 - x0,
                        height: y1 - y0,
                    },
                })
            }
            Fit::Stretch => Ok(RegionPlan {
                plan: Plan {
                    source,
                    resized: (side, side),
                    window: whole(side, side),
                },
                canvas: None,
                input_rect: rect,
            }),
            Fit::Pad => {
                let (rw, rh) = if rect.width >= rect.height {
                    (side, letterboxed(rect.height, rect.width, side))
                } else {
                    (letterboxed(rect.width, rect.height, side), side)
                };
                let [r, g, b] = pad_rgb;
                Ok(RegionPlan {
                    plan: Plan {
                        source,
                        resized: (rw, rh),
                        window: whole(rw, rh),
                    },
                    canvas: Some(Canvas {
                        side,
                        x: (side - rw) / 2,
                        y: (side - rh) / 2,
                        bgr: [b, g, r],
                    }),
                    input_rect: rect,
                })
            }
        }
    }
}

/// Places `pixels` (packed BGR, `cols`×`rows`) on `canvas`, written to `out` (packed BGR,
/// `side`×`side`).
pub fn compose(pixels: &[u8], (cols, rows): (usize, usize), canvas: &Canvas, out: &mut Vec<u8>) {
    let side = canvas.side as usize;
    out.clear();
    out.reserve(side * side * 3);
    for _ in 0..side * side {
        out.extend_from_slice(&canvas.bgr);
    }
    let (x, y) = (canvas.x as usize, canvas.y as usize);
    for (r, line) in pixels.chunks_exact(cols * 3).take(rows).enumerate() {
        let at = ((y + r) * side + x) * 3;
        out[at..at + cols * 3].copy_from_slice(line);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Geometry, Interpolation, Layout};
    use super::*;

    fn spec(geometry: Geometry) -> PreprocessSpec {
        PreprocessSpec {
            geometry,
            crop: 224,
            interpolation: Interpolation::Bilinear,
            normalize: Normalize {
                channel_order: ChannelOrder::Rgb,
                scale: 1.0 / 255.0,
                mean: [0.485, 0.456, 0.406],
                std: [0.229, 0.224, 0.225],
            },
            layout: Layout::Nchw,
        }
    }

    const TORCHVISION: Geometry = Geometry::ResizeCrop {
        resize_shorter: 256,
    };

    fn rect(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn the_mean_as_a_colour_is_the_default_padding() {
        let s = spec(TORCHVISION);
        assert_eq!(s.normalize.mean_rgb(), [124, 116, 104]);
        let bgr = Normalize {
            channel_order: ChannelOrder::Bgr,
            scale: 1.0,
            mean: [103.53, 116.28, 123.675],
            std: [1.0; 3],
        };
        assert_eq!(bgr.mean_rgb(), [124, 116, 104]);
    }

    #[test]
    fn letterbox_sizes_round_half_up_and_never_vanish() {
        // 640×360 into 224: 360 × 224 / 640 = 126.0
        assert_eq!(letterboxed(360, 640, 224), 126);
        // 100×33: 33 × 224 / 100 = 73.92 → 74; 3×2: 2 × 224 / 3 = 149.33 → 149
        assert_eq!(letterboxed(33, 100, 224), 74);
        assert_eq!(letterboxed(2, 3, 224), 149);
        // x.5 rounds up: 1 × 224 / 448 = 0.5 → 1; a 1-pixel-wide region keeps 1 pixel
        assert_eq!(letterboxed(1, 448, 224), 1);
        assert_eq!(letterboxed(1, 10_000, 224), 1);
    }

    #[test]
    fn pad_centres_the_region_on_the_short_axis() {
        let s = spec(TORCHVISION);
        let p = s
            .plan_region(rect(640, 0, 640, 720), Fit::Pad, [1, 2, 3], 1280, 720)
            .expect("fits");
        // 640×720: long side 720 → 224, short 640 × 224 / 720 = 199.1 → 199
        assert_eq!(p.plan.source, (640, 0, 640, 720));
        assert_eq!(p.plan.resized, (199, 224));
        let c = p.canvas.expect("a canvas");
        assert_eq!((c.side, c.x, c.y, c.bgr), (224, 12, 0, [3, 2, 1]));
        assert_eq!(p.input_rect, rect(640, 0, 640, 720));
        // Odd leftover: 225 - 1 = 223 → offset 111 on a 1-pixel-high strip
        let p = s
            .plan_region(rect(0, 5, 300, 1), Fit::Pad, [0; 3], 300, 6)
            .expect("fits");
        assert_eq!(p.plan.resized, (224, 1));
        assert_eq!(p.canvas.map(|c| (c.x, c.y)), Some((0, 111)));
    }

    #[test]
    fn stretch_resizes_the_whole_region_to_the_square() {
        let s = spec(TORCHVISION);
        let p = s
            .plan_region(rect(1, 2, 1, 719), Fit::Stretch, [0; 3], 2, 721)
            .expect("fits");
        assert_eq!(p.plan.source, (1, 2, 1, 719));
        assert_eq!(p.plan.resized, (224, 224));
        assert_eq!(p.canvas, None);
        assert_eq!(p.input_rect, rect(1, 2, 1, 719));
    }

    #[test]
    fn crop_applies_the_preset_to_the_region_and_maps_the_window_back() {
        let s = spec(TORCHVISION);
        // 640×720 region: shorter side 640 → 256, longer int(256 × 720 / 640) = 288;
        // crop at (16, 32) of 256×288.
        let p = s
            .plan_region(rect(640, 0, 640, 720), Fit::Crop, [0; 3], 1280, 720)
            .expect("fits");
        assert_eq!(p.plan.source, (640, 0, 640, 720));
        assert_eq!(p.plan.resized, (256, 288));
        assert_eq!((p.plan.window.x, p.plan.window.y), (16, 32));
        // Back in source pixels: 16 × 640/256 = 40, 32 × 720/288 = 80, 224 × 2.5 = 560.
        assert_eq!(p.input_rect, rect(680, 80, 560, 560));
        // The whole frame as a region plans exactly as the frame does.
        let whole = s
            .plan_region(rect(0, 0, 1280, 720), Fit::Crop, [0; 3], 1280, 720)
            .expect("fits");
        assert_eq!(whole.plan, s.plan(1280, 720).expect("plans"));
        // crop-resize: the center square of the region, resized.
        let tf = spec(Geometry::CropResize {
            crop_fraction: 0.875,
        });
        let p = tf
            .plan_region(rect(100, 50, 401, 201), Fit::Crop, [0; 3], 640, 360)
            .expect("fits");
        // side floor(0.875 × 201) = 175, offsets ((401-175+1)/2, (201-175+1)/2) = (113, 13)
        assert_eq!(p.plan.source, (213, 63, 175, 175));
        assert_eq!(p.input_rect, rect(213, 63, 175, 175));
    }

    #[test]
    fn a_region_at_the_edge_fits_and_one_past_it_does_not() {
        let s = spec(TORCHVISION);
        assert!(s
            .plan_region(rect(1200, 640, 80, 80), Fit::Pad, [0; 3], 1280, 720)
            .is_ok());
        for r in [
            rect(1201, 640, 80, 80),
            rect(0, 641, 80, 80),
            rect(0, 0, 0, 5),
        ] {
            let e = s.plan_region(r, Fit::Stretch, [0; 3], 1280, 720);
            assert!(
                matches!(e, Err(PreprocessError::RegionOutside { .. })),
                "{r:?}"
            );
        }
        let huge = rect(u32::MAX, 0, 2, 2);
        assert!(!huge.fits_in(1280, 720), "no overflow");
    }

    #[test]
    fn compose_fills_the_canvas_and_places_the_rows() {
        let canvas = Canvas {
            side: 4,
            x: 1,
            y: 2,
            bgr: [7, 8, 9],
        };
        // 2×1 image: pixels [1,2,3] and [4,5,6]
        let mut out = Vec::new();
        compose(&[1, 2, 3, 4, 5, 6], (2, 1), &canvas, &mut out);
        assert_eq!(out.len(), 4 * 4 * 3);
        let px = |x: usize, y: usize| &out[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
        assert_eq!(px(1, 2), &[1, 2, 3]);
        assert_eq!(px(2, 2), &[4, 5, 6]);
        assert_eq!(px(0, 2), &[7, 8, 9]);
        assert_eq!(px(3, 3), &[7, 8, 9]);
        assert_eq!(px(1, 1), &[7, 8, 9]);
    }

    #[test]
    fn a_fraction_of_the_frame_resolves_to_whole_pixels_inside_it() {
        let px = |x, y, width, height| Rect {
            x,
            y,
            width,
            height,
        };
        // The right half of a 1280x720 frame, and of a 640x360 sub-stream.
        let right = Place::Fraction([0.5, 0.0, 0.5, 1.0]);
        assert_eq!(right.resolve(1280, 720), px(640, 0, 640, 720));
        assert_eq!(right.resolve(640, 360), px(320, 0, 320, 360));
        // Edges round to the nearest pixel, halves up: 0.25 × 641 = 160.25 → 160,
        // 0.75 × 641 = 480.75 → 481; 1/3 × 301 = 100.33 → 100.
        let odd = Place::Fraction([0.25, 1.0 / 3.0, 0.5, 1.0 / 3.0]);
        assert_eq!(odd.resolve(641, 301), px(160, 100, 321, 101));
        // A sliver stays one pixel wide; the far edge stays inside the frame.
        assert_eq!(
            Place::Fraction([0.999, 0.0, 0.001, 1.0]).resolve(100, 10),
            px(99, 0, 1, 10)
        );
        let pixels = px(3, 4, 5, 6);
        assert_eq!(
            Place::Pixels(pixels).resolve(1, 1),
            pixels,
            "pixels are as written"
        );
    }
}
