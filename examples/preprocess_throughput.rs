//! Preprocessing cost per frame on real decoded frames: torchvision's evaluation transform
//! (resize the shorter side to 256 with Pillow's antialiased bilinear, center crop 224,
//! normalize to NCHW float), one thread, as a camera's preprocess thread runs it.
//!
//! ```text
//! cargo run --release --example preprocess_throughput -- CLIP.mp4 [FRAMES] [REPEATS]
//! ```
//! Decodes the first FRAMES frames (default 50) into memory, then prints the median time
//! per frame over REPEATS passes (default 7) and the range: for the whole frame, then for
//! one region of interest (the frame's left half, as a camera's `[[camera.region]]` would
//! be) with each `fit`, which is what each additional region costs in preprocessing.

use std::path::PathBuf;
use std::time::Instant;

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{VideoCapture, CAP_FFMPEG};
use streamclassd::preprocess::{Fit, Geometry, Layout, PreprocessSpec, Preprocessor, Preset, Rect};

/// Median, lowest and highest µs per image of `pass` (one pass over `n` images), `repeats`
/// times.
fn time_per_image(
    repeats: usize,
    n: usize,
    mut pass: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64, f64)> {
    pass()?;
    let mut us = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        pass()?;
        us.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    us.sort_by(f64::total_cmp);
    Ok((us[us.len() / 2], us[0], us[us.len() - 1]))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let clip =
        PathBuf::from(args.get(1).ok_or_else(|| {
            anyhow::anyhow!("usage: preprocess_throughput CLIP [FRAMES] [REPEATS]")
        })?);
    let frames: usize = args.get(2).map_or(Ok(50), |s| s.parse())?;
    let repeats: usize = args.get(3).map_or(Ok(7), |s| s.parse())?;
    let mut cap = VideoCapture::from_file(&clip, CAP_FFMPEG)?;
    let mut images = Vec::with_capacity(frames);
    while images.len() < frames {
        let mut m = Mat::default();
        if !cap.read(&mut m)? || m.empty() {
            break;
        }
        images.push(m);
    }
    anyhow::ensure!(
        !images.is_empty(),
        "no frames decoded from {}",
        clip.display()
    );
    let spec = PreprocessSpec {
        geometry: Geometry::ResizeCrop {
            resize_shorter: 256,
        },
        crop: 224,
        interpolation: Preset::Torchvision.values().interpolation,
        normalize: Preset::Torchvision.values().normalize,
        layout: Layout::Nchw,
    };
    let mut pre = Preprocessor::new(spec);
    let mut out = vec![0f32; spec.tensor_len()];
    let n = images.len();
    let (med, lo, hi) = time_per_image(repeats, n, || {
        for image in &images {
            pre.run_into(image, &mut out)?;
        }
        Ok(())
    })?;
    let (w, h) = (images[0].cols() as u32, images[0].rows() as u32);
    println!(
        "preprocess {w}x{h} -> 224x224 (torchvision, Pillow bilinear): {med:.0} µs/frame median of {repeats} x {n} frames (range {lo:.0}–{hi:.0})"
    );
    let half = Rect {
        x: 0,
        y: 0,
        width: w / 2,
        height: h,
    };
    for fit in [Fit::Crop, Fit::Pad, Fit::Stretch] {
        let plan = spec.plan_region(half, fit, spec.normalize.mean_rgb(), w, h)?;
        let (med, lo, hi) = time_per_image(repeats, n, || {
            for image in &images {
                pre.run_region_into(image, &plan, &mut out)?;
            }
            Ok(())
        })?;
        println!(
            "  region {}x{} fit = {:?}: {med:.0} µs/region (range {lo:.0}–{hi:.0})",
            half.width,
            half.height,
            fit.as_str()
        );
    }
    Ok(())
}
