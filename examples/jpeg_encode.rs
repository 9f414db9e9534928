//! JPEG encoding of real decoded frames, as the console and MQTT snapshots make them:
//! OpenCV `imgcodecs` (what streamclassd uses, through `monitor::jpeg::render`) against the
//! pure-Rust `jpeg-encoder` crate (SIMD on), same frames, same scaling, same quality, one
//! thread, side by side in one run.
//!
//! ```text
//! cargo run --release --example jpeg_encode -- CLIP.mp4 [FRAMES] [REPEATS] [QUALITY]
//! ```
//! Decodes the first FRAMES frames (default 50), then for each output height (the frame's
//! own, 480, 360 — a console tile — and 180) prints the median ms per frame over REPEATS
//! passes (default 7) with the range, and the mean JPEG size. Scaling (OpenCV INTER_AREA)
//! is inside both timings; each `jpeg-encoder` output is checked to decode to the same size.

use std::path::PathBuf;
use std::time::Instant;

use jpeg_encoder::{ColorType, Encoder};
use opencv::core::{Mat, Size, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use opencv::videoio::{VideoCapture, CAP_FFMPEG};
use streamclassd::monitor::frames::JpegKey;
use streamclassd::monitor::jpeg;

/// Median, lowest and highest ms per image over `repeats` passes, and the mean bytes.
fn time_per_image(
    repeats: usize,
    images: &[Mat],
    mut one: impl FnMut(&Mat) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    let mut bytes = 0usize;
    for image in images {
        bytes += one(image)?.len();
    }
    let mut ms = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        for image in images {
            std::hint::black_box(one(image)?);
        }
        ms.push(start.elapsed().as_secs_f64() * 1e3 / images.len() as f64);
    }
    ms.sort_by(f64::total_cmp);
    let mean = bytes as f64 / images.len() as f64;
    Ok((ms[ms.len() / 2], ms[0], ms[ms.len() - 1], mean))
}

/// Scaled as `render` scales (INTER_AREA), then encoded by `jpeg-encoder` from BGR.
fn pure_rust(image: &Mat, height: i32, quality: u8) -> anyhow::Result<Vec<u8>> {
    let mut scaled = Mat::default();
    let img = if height == image.rows() {
        image
    } else {
        let width = (f64::from(image.cols()) * f64::from(height) / f64::from(image.rows())).round();
        imgproc::resize(
            image,
            &mut scaled,
            Size::new(width as i32, height),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        &scaled
    };
    let (w, h) = (u16::try_from(img.cols())?, u16::try_from(img.rows())?);
    let mut out = Vec::with_capacity(usize::from(w) * usize::from(h) / 4);
    Encoder::new(&mut out, quality).encode(img.data_bytes()?, w, h, ColorType::Bgr)?;
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: jpeg_encode CLIP [FRAMES] [REPEATS] [QUALITY]";
    let clip = PathBuf::from(args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?);
    let frames: usize = args.get(2).map_or(Ok(50), |s| s.parse())?;
    let repeats: usize = args.get(3).map_or(Ok(7), |s| s.parse())?;
    let quality: u8 = args.get(4).map_or(Ok(75), |s| s.parse())?;
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
    let (w, h) = (images[0].cols(), images[0].rows());
    println!(
        "{} frames {w}x{h} of {}, quality {quality}, {repeats} passes: ms per frame median (min–max), mean KiB",
        images.len(),
        clip.display()
    );
    println!("height | OpenCV imgcodecs | jpeg-encoder | jpeg-encoder / OpenCV");
    for height in [h, 480, 360, 180].into_iter().filter(|&x| x <= h) {
        let key = JpegKey {
            height: (height != h).then_some(height as u32),
            quality,
            overlay: false,
        };
        let cv = time_per_image(repeats, &images, |img| Ok(jpeg::render(img, key, None)?))?;
        let rs = time_per_image(repeats, &images, |img| pure_rust(img, height, quality))?;
        let check = pure_rust(&images[0], height, quality)?;
        let decoded = imgcodecs::imdecode(&Vector::from_slice(&check), imgcodecs::IMREAD_COLOR)?;
        anyhow::ensure!(
            decoded.rows() == height,
            "jpeg-encoder output does not decode"
        );
        let cell = |(m, lo, hi, b): (f64, f64, f64, f64)| {
            format!("{m:.2} ({lo:.2}–{hi:.2}) ms, {:.1} KiB", b / 1024.0)
        };
        println!(
            "{height} | {} | {} | {:.2}×",
            cell(cv),
            cell(rs),
            rs.0 / cv.0
        );
    }
    Ok(())
}
