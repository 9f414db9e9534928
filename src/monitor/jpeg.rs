//! A shot as JPEG: scaled to the height asked for (area averaging, width in proportion),
//! optionally with the regions outlined and the top-1 labels written on it, encoded by
//! OpenCV's `imgcodecs` (libjpeg-turbo; measured against the pure-Rust `jpeg-encoder` in
//! `examples/jpeg_encode.rs`, see `docs/design.md`). The shot itself is never drawn on.

use opencv::core::{Mat, Point, Rect, Scalar, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use super::frames::JpegKey;

/// Heights a JPEG may be asked for.
pub const HEIGHTS: std::ops::RangeInclusive<u32> = 16..=4320;

/// What `overlay=1` draws.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// The whole frame's top-1 (label and score).
    pub label: Option<(String, f32)>,
    pub regions: Vec<Mark>,
}

/// A region on the overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub name: String,
    /// Its `input_rect` in frame pixels (x, y, w, h).
    pub rect: [u32; 4],
    pub top1: Option<(String, f32)>,
}

fn text_of((label, score): &(String, f32)) -> String {
    // Hershey fonts draw ASCII only.
    let label: String = label
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    format!("{label} {:.0}%", score * 100.0)
}

/// Writes `text` with its top-left corner at `at`, white on a dark box, inside `img`.
fn label(img: &mut Mat, text: &str, at: Point, scale: f64) -> opencv::Result<()> {
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let thick = (scale * 2.0).round().max(1.0) as i32;
    let mut base = 0;
    let size = imgproc::get_text_size(text, font, scale, thick, &mut base)?;
    let pad = thick + 2;
    let (w, h) = (size.width + 2 * pad, size.height + base + 2 * pad);
    let x = at.x.clamp(0, (img.cols() - w).max(0));
    let y = at.y.clamp(0, (img.rows() - h).max(0));
    imgproc::rectangle(
        img,
        Rect::new(x, y, w, h),
        Scalar::new(20.0, 20.0, 20.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    let origin = Point::new(x + pad, y + pad + size.height);
    let white = Scalar::new(255.0, 255.0, 255.0, 0.0);
    imgproc::put_text(
        img,
        text,
        origin,
        font,
        scale,
        white,
        thick,
        imgproc::LINE_AA,
        false,
    )
}

fn draw(img: &mut Mat, overlay: &Overlay, factor: f64) -> opencv::Result<()> {
    let scale = (f64::from(img.rows()) / 720.0).max(0.35);
    let color = Scalar::new(0.0, 200.0, 255.0, 0.0);
    for Mark { name, rect, top1 } in &overlay.regions {
        let [x, y, w, h] = rect;
        let px = |v: u32| (f64::from(v) * factor).round() as i32;
        let rect = Rect::new(px(*x), px(*y), px(*w).max(1), px(*h).max(1));
        let thick = (2.0 * scale).round().max(1.0) as i32;
        imgproc::rectangle(img, rect, color, thick, imgproc::LINE_8, 0)?;
        let text = match top1 {
            Some(t) => format!("{name}: {}", text_of(t)),
            None => name.clone(),
        };
        label(img, &text, Point::new(rect.x, rect.y), 0.6 * scale)?;
    }
    if let Some(top1) = &overlay.label {
        label(img, &text_of(top1), Point::new(0, 0), 0.8 * scale)?;
    }
    Ok(())
}

/// `image` (8-bit BGR) as a JPEG for `key`, with `overlay` drawn when the key asks for it.
pub fn render(image: &Mat, key: JpegKey, overlay: Option<&Overlay>) -> opencv::Result<Vec<u8>> {
    let rows = image.rows().max(1);
    let height = key.height.map_or(rows, |h| h as i32);
    let factor = f64::from(height) / f64::from(rows);
    let width = ((f64::from(image.cols()) * factor).round() as i32).max(1);
    let mut scaled = Mat::default();
    let img = if height != rows {
        imgproc::resize(
            image,
            &mut scaled,
            Size::new(width, height),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        &mut scaled
    } else if key.overlay {
        scaled = image.try_clone()?;
        &mut scaled
    } else {
        return encode(image, key.quality);
    };
    if let (true, Some(overlay)) = (key.overlay, overlay) {
        draw(img, overlay, factor)?;
    }
    encode(img, key.quality)
}

fn encode(img: &Mat, quality: u8) -> opencv::Result<Vec<u8>> {
    let mut out = Vector::<u8>::new();
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
    imgcodecs::imencode(".jpg", img, &mut out, &params)?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use opencv::core::CV_8UC3;

    use super::*;

    #[test]
    fn renders_a_decodable_jpeg_of_the_height_asked_for_with_and_without_overlay() {
        let image = Mat::new_rows_cols_with_default(
            720,
            1280,
            CV_8UC3,
            Scalar::new(10.0, 120.0, 240.0, 0.0),
        )
        .expect("mat");
        let overlay = Overlay {
            label: Some(("tabby, tabby cat".into(), 0.42)),
            regions: vec![Mark {
                name: "door".into(),
                rect: [640, 0, 640, 720],
                top1: Some(("cup".into(), 0.9)),
            }],
        };
        for (height, overlay_on) in [
            (None, false),
            (Some(240), false),
            (Some(360), true),
            (None, true),
        ] {
            let key = JpegKey {
                height,
                quality: 80,
                overlay: overlay_on,
            };
            let jpeg = render(&image, key, Some(&overlay)).expect("encodes");
            assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
            let back = imgcodecs::imdecode(&Vector::from_slice(&jpeg), imgcodecs::IMREAD_COLOR)
                .expect("decodes");
            let h = height.map_or(720, |h| h as i32);
            let w = (f64::from(h) * 1280.0 / 720.0).round() as i32;
            assert_eq!((back.rows(), back.cols()), (h, w));
            // The overlay's dark label box sits at the top-left; the plain frame is orange.
            let px = back.at_2d::<opencv::core::Vec3b>(2, 2).expect("px");
            assert_eq!(
                px[2] < 60,
                overlay_on,
                "pixel {px:?} with overlay {overlay_on}"
            );
        }
        // The source image is left as it was.
        let px = image.at_2d::<opencv::core::Vec3b>(2, 2).expect("px");
        assert_eq!(px[2], 240);
    }
}
