//! Preprocessing cost per frame on real decoded frames: torchvision's evaluation transform
//! (resize the shorter side to 256 with Pillow's antialiased bilinear, center crop 224,
//! normalize to NCHW float), one thread, as a camera's preprocess thread runs it.
//!
//! ```text
//! cargo run --release --example preprocess_throughput -- CLIP.mp4 [FRAMES] [REPEATS]
//! ```
//! Decodes the first FRAMES frames (default 50) into memory, then prints the median time
//! per frame over REPEATS passes (default 7) and the range.

use std::path::PathBuf;
use std::time::Instant;

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio::{VideoCapture, CAP_FFMPEG};
use streamclassd::preprocess::{Geometry, Layout, PreprocessSpec, Preprocessor, Preset};

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
    pre.run_into(&images[0], &mut out)?;
    let mut per_frame_us = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        for image in &images {
            pre.run_into(image, &mut out)?;
        }
        per_frame_us.push(start.elapsed().as_secs_f64() * 1e6 / images.len() as f64);
    }
    per_frame_us.sort_by(f64::total_cmp);
    println!(
        "preprocess {}x{} -> 224x224 (torchvision, Pillow bilinear): {:.0} µs/frame median of {repeats} x {} frames (range {:.0}–{:.0})",
        images[0].cols(),
        images[0].rows(),
        per_frame_us[per_frame_us.len() / 2],
        images.len(),
        per_frame_us[0],
        per_frame_us[per_frame_us.len() - 1]
    );
    Ok(())
}
