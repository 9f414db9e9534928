//! Antialiased resampling that reproduces Pillow's `Image.resize` bit for bit.
//!
//! torchvision's evaluation transform resizes PIL images, so a model trained and evaluated
//! with it has only ever seen Pillow's resampling: a separable convolution whose filter is
//! widened by the downscale factor (antialiasing), with 22-bit fixed-point weights, a
//! horizontal pass first into an 8-bit intermediate image, then a vertical pass. OpenCV's
//! `INTER_LINEAR` samples only 2×2 pixels however far it shrinks, and SIMD resizers such as
//! `fast_image_resize` round differently (measured on a 640x360 → 455x256 frame: up to
//! ±1 on 1.5% of values with bilinear, up to 13 with bicubic), so this module implements
//! Pillow's algorithm (libImaging/Resample.c) directly.
//!
//! Only the output window that is kept is computed: resizing a 720p frame and then taking
//! a 224×224 center crop computes 224×224 output pixels, each exactly the value Pillow
//! gives for that pixel of the full resize.

/// Pillow's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Resampling filters, named as in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Pillow `BILINEAR`: triangle filter, support 1 (widened when shrinking).
    Bilinear,
    /// Pillow `BICUBIC`: cubic convolution with a = -0.5, support 2.
    Bicubic,
    /// Pillow `BOX`: the average of the covered source pixels (area).
    Area,
    /// Pillow `NEAREST`: the source pixel under each output pixel's center.
    Nearest,
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Interpolation::Bilinear => 1.0,
            Interpolation::Bicubic => 2.0,
            Interpolation::Area | Interpolation::Nearest => 0.5,
        }
    }

    /// The filter's weight at signed distance `x` (in filter units).
    fn weight(self, x: f64) -> f64 {
        match self {
            Interpolation::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Interpolation::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            // Pillow's box is 1 on (-0.5, 0.5]: asymmetric, so no `abs`.
            Interpolation::Area | Interpolation::Nearest => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point weights of a 1-D resampling, for a window of output positions.
#[derive(Debug, Clone, Default)]
pub struct Coefficients {
    /// Taps per output position (padded with zero weights).
    ksize: usize,
    /// First source index used by each output position.
    first: Vec<usize>,
    /// Number of source indices used by each output position.
    len: Vec<usize>,
    /// `ksize` weights per output position, in 1 << PRECISION_BITS units.
    weights: Vec<i32>,
}

impl Coefficients {
    /// Weights for resizing `in_size` → `out_size` (the full output), restricted to the
    /// output positions `window.start..window.end`. Mirrors Pillow's `precompute_coeffs`
    /// and `normalize_coeffs_8bpc` for an input box of `[0, in_size)`.
    pub fn new(
        in_size: usize,
        out_size: usize,
        window: std::ops::Range<usize>,
        filter: Interpolation,
    ) -> Coefficients {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut c = Coefficients {
            ksize,
            first: Vec::with_capacity(window.len()),
            len: Vec::with_capacity(window.len()),
            weights: vec![0; window.len() * ksize],
        };
        let mut k = vec![0f64; ksize];
        for (i, xx) in window.enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) cast truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(n) {
                let arg = (x as f64 + xmin as f64 - center + 0.5) * ss;
                let w = filter.weight(arg);
                *kx = w;
                ww += w;
            }
            let out = &mut c.weights[i * ksize..(i + 1) * ksize];
            for (x, o) in out.iter_mut().enumerate().take(n) {
                let v = if ww != 0.0 { k[x] / ww } else { k[x] };
                let fixed = v * f64::from(1u32 << PRECISION_BITS);
                *o = if v < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            c.first.push(xmin);
            c.len.push(n);
        }
        c
    }

    /// Source range `[start, end)` touched by the whole window.
    fn span(&self) -> (usize, usize) {
        let start = self.first.iter().copied().min().unwrap_or(0);
        let end = self
            .first
            .iter()
            .zip(&self.len)
            .map(|(f, l)| f + l)
            .max()
            .unwrap_or(0);
        (start, end)
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A borrowed 3-channel 8-bit image: `rows` × `cols` pixels, rows `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub pixels: &'a [u8],
    pub stride: usize,
    pub cols: usize,
    pub rows: usize,
}

/// Reusable resampler: keeps its coefficient tables and intermediate buffer between frames
/// of the same geometry.
#[derive(Debug, Default)]
pub struct Resampler {
    key: Option<(usize, usize, usize, usize, Window, Interpolation)>,
    horizontal: Coefficients,
    vertical: Coefficients,
    temp: Vec<u8>,
    /// One output row of vertical-pass sums.
    sums: Vec<i32>,
}

/// Which part of the resized image to produce: `cols`×`rows` starting at (`x`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: usize,
    pub y: usize,
    pub cols: usize,
    pub rows: usize,
}

impl Resampler {
    /// Resizes `src` to `out_cols`×`out_rows` with `filter`, as Pillow would, and writes
    /// the `window` of that result into `dst` (packed, `window.cols * 3` bytes per row).
    pub fn resize(
        &mut self,
        src: View<'_>,
        (out_cols, out_rows): (usize, usize),
        window: Window,
        filter: Interpolation,
        dst: &mut Vec<u8>,
    ) {
        dst.clear();
        dst.resize(window.cols * window.rows * 3, 0);
        if filter == Interpolation::Nearest {
            nearest(src, (out_cols, out_rows), window, dst);
            return;
        }
        let key = (src.cols, src.rows, out_cols, out_rows, window, filter);
        if self.key != Some(key) {
            self.horizontal =
                Coefficients::new(src.cols, out_cols, window.x..window.x + window.cols, filter);
            self.vertical =
                Coefficients::new(src.rows, out_rows, window.y..window.y + window.rows, filter);
            self.key = Some(key);
        }
        let need_h = out_cols != src.cols;
        let need_v = out_rows != src.rows;
        let (y0, y1) = self.vertical.span();

        // Horizontal pass over the source rows the vertical pass will read.
        let (h_src, h_stride, h_x0): (&[u8], usize, usize) = if need_h {
            let w = window.cols;
            self.temp.clear();
            self.temp.resize((y1 - y0) * w * 3, 0);
            let hc = &self.horizontal;
            let half = 1i32 << (PRECISION_BITS - 1);
            for (ty, sy) in (y0..y1).enumerate() {
                let row = &src.pixels[sy * src.stride..sy * src.stride + src.cols * 3];
                let out = &mut self.temp[ty * w * 3..(ty + 1) * w * 3];
                for (xx, px) in out.chunks_exact_mut(3).enumerate() {
                    let k = &hc.weights[xx * hc.ksize..xx * hc.ksize + hc.len[xx]];
                    let taps = &row[hc.first[xx] * 3..(hc.first[xx] + hc.len[xx]) * 3];
                    let (mut s0, mut s1, mut s2) = (half, half, half);
                    for (p, &w) in taps.chunks_exact(3).zip(k) {
                        s0 += i32::from(p[0]) * w;
                        s1 += i32::from(p[1]) * w;
                        s2 += i32::from(p[2]) * w;
                    }
                    px[0] = clip8(s0);
                    px[1] = clip8(s1);
                    px[2] = clip8(s2);
                }
            }
            (&self.temp, w * 3, 0)
        } else {
            // No horizontal resize: read the window's columns straight from the source.
            (&src.pixels[y0 * src.stride..], src.stride, window.x * 3)
        };

        let vc = &self.vertical;
        let n = window.cols * 3;
        for (yy, out) in dst.chunks_exact_mut(n).enumerate() {
            if !need_v {
                let sy = window.y + yy - y0;
                let start = sy * h_stride + h_x0;
                out.copy_from_slice(&h_src[start..start + n]);
                continue;
            }
            // Row by row: each tap adds a whole source row times its weight (vectorizes).
            let k = &vc.weights[yy * vc.ksize..yy * vc.ksize + vc.len[yy]];
            let first = vc.first[yy] - y0;
            self.sums.clear();
            self.sums.resize(n, 1i32 << (PRECISION_BITS - 1));
            for (t, &w) in k.iter().enumerate() {
                let start = (first + t) * h_stride + h_x0;
                for (s, &p) in self.sums.iter_mut().zip(&h_src[start..start + n]) {
                    *s += i32::from(p) * w;
                }
            }
            for (o, &s) in out.iter_mut().zip(&self.sums) {
                *o = clip8(s);
            }
        }
    }
}

/// Pillow's `NEAREST` resize: source pixel `floor((x + 0.5) * scale)`.
fn nearest(src: View<'_>, (out_cols, out_rows): (usize, usize), window: Window, dst: &mut [u8]) {
    let sx = src.cols as f64 / out_cols as f64;
    let sy = src.rows as f64 / out_rows as f64;
    for (yy, out) in dst.chunks_exact_mut(window.cols * 3).enumerate() {
        let y = ((((window.y + yy) as f64 + 0.5) * sy) as usize).min(src.rows - 1);
        let row = &src.pixels[y * src.stride..];
        for (xx, px) in out.chunks_exact_mut(3).enumerate() {
            let x = ((((window.x + xx) as f64 + 0.5) * sx) as usize).min(src.cols - 1);
            px.copy_from_slice(&row[x * 3..x * 3 + 3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(cols: usize, rows: usize) -> Vec<u8> {
        (0..cols * rows * 3)
            .map(|i| ((i * 37 + (i / 7) * 11) % 256) as u8)
            .collect()
    }

    fn full(
        src: &[u8],
        cols: usize,
        rows: usize,
        out: (usize, usize),
        f: Interpolation,
    ) -> Vec<u8> {
        let mut r = Resampler::default();
        let mut dst = Vec::new();
        let view = View {
            pixels: src,
            stride: cols * 3,
            cols,
            rows,
        };
        let w = Window {
            x: 0,
            y: 0,
            cols: out.0,
            rows: out.1,
        };
        r.resize(view, out, w, f, &mut dst);
        dst
    }

    #[test]
    fn a_window_equals_the_same_pixels_of_the_full_resize() {
        let (cols, rows) = (97, 61);
        let src = image(cols, rows);
        for f in [
            Interpolation::Bilinear,
            Interpolation::Bicubic,
            Interpolation::Area,
            Interpolation::Nearest,
        ] {
            let whole = full(&src, cols, rows, (50, 32), f);
            let win = Window {
                x: 7,
                y: 5,
                cols: 30,
                rows: 20,
            };
            let mut part = Vec::new();
            let view = View {
                pixels: &src,
                stride: cols * 3,
                cols,
                rows,
            };
            Resampler::default().resize(view, (50, 32), win, f, &mut part);
            for y in 0..20 {
                let a = &whole[((y + 5) * 50 + 7) * 3..((y + 5) * 50 + 37) * 3];
                assert_eq!(&part[y * 90..(y + 1) * 90], a, "{f:?} row {y}");
            }
        }
    }

    #[test]
    fn identity_size_is_an_exact_copy() {
        let src = image(16, 9);
        for f in [
            Interpolation::Bilinear,
            Interpolation::Bicubic,
            Interpolation::Area,
        ] {
            assert_eq!(full(&src, 16, 9, (16, 9), f), src);
        }
    }

    #[test]
    fn uniform_images_stay_uniform_and_weights_sum_to_one() {
        let src = vec![200u8; 40 * 30 * 3];
        for f in [
            Interpolation::Bilinear,
            Interpolation::Bicubic,
            Interpolation::Area,
        ] {
            assert!(full(&src, 40, 30, (13, 7), f).iter().all(|&v| v == 200));
            let c = Coefficients::new(40, 13, 0..13, f);
            for i in 0..13 {
                let sum: i64 = c.weights[i * c.ksize..(i + 1) * c.ksize]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= c.ksize as i64,
                    "{f:?} {sum}"
                );
            }
        }
    }

    #[test]
    fn two_to_one_bilinear_averages_neighbours_like_pillow() {
        // Pillow: Image.new("L", (4, 1)) holding [0, 100, 200, 50], resized to (2, 1) with
        // BILINEAR, gives [71, 121]: a triangle widened to support 2 around 1.0 and 3.0.
        let src: Vec<u8> = [0u8, 100, 200, 50]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let out = full(&src, 4, 1, (2, 1), Interpolation::Bilinear);
        // x=0: taps 0,1,2 weighted 0.75,0.75,0.25 (/1.75): 125 / 1.75 = 71.4
        // x=1: taps 1,2,3 weighted 0.25,0.75,0.75 (/1.75): 212.5 / 1.75 = 121.4
        assert_eq!(out[0], 71);
        assert_eq!(out[3], 121);
    }
}
