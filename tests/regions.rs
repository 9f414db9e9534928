//! Regions of interest, exact to the model's preprocessing: on real frames (a clip of real
//! photos), every fit of every region gives the pixels an independent Pillow reference
//! gets by cutting the region out and fitting it step by step
//! (`tests/support/region_reference.py`), byte for byte, and the same `input_rect`.

mod common;

use std::process::Command;

use opencv::prelude::*;
use opencv::videoio::{VideoCapture, CAP_FFMPEG};
use serde_json::{json, Value};
use streamclassd::preprocess::{
    ChannelOrder, Fit, Geometry, Interpolation, Layout, Normalize, PreprocessSpec, Preprocessor,
    Rect,
};

fn spec(geometry: Geometry, interpolation: Interpolation) -> PreprocessSpec {
    PreprocessSpec {
        geometry,
        crop: 224,
        interpolation,
        normalize: Normalize {
            channel_order: ChannelOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        },
        layout: Layout::Nchw,
    }
}

/// Frames `indices` of the clip of real photos, as OpenCV decodes them (BGR).
fn frames(indices: &[usize]) -> Vec<opencv::core::Mat> {
    let mut cap = VideoCapture::from_file(
        common::fixtures()
            .join("photos.mp4")
            .to_str()
            .expect("utf-8"),
        CAP_FFMPEG,
    )
    .expect("open");
    let mut out = Vec::new();
    for i in 0..=*indices.iter().max().expect("some") {
        let mut m = opencv::core::Mat::default();
        assert!(cap.read(&mut m).expect("read"), "frame {i}");
        if indices.contains(&i) {
            out.push(m);
        }
    }
    out
}

fn rgb(bgr: &[u8]) -> Vec<u8> {
    bgr.chunks_exact(3)
        .flat_map(|p| [p[2], p[1], p[0]])
        .collect()
}

#[test]
fn every_fit_of_every_region_equals_pillow_cutting_then_fitting() {
    let tv = Geometry::ResizeCrop {
        resize_shorter: 256,
    };
    let tf = Geometry::CropResize {
        crop_fraction: 0.875,
    };
    let geometries = [
        ("resize-crop", tv, Interpolation::Bilinear, "bilinear"),
        ("crop-resize", tf, Interpolation::Bicubic, "bicubic"),
    ];
    let pad = [124u8, 116, 104];
    for frame in frames(&[3, 57]) {
        let (w, h) = (frame.cols() as u32, frame.rows() as u32);
        // Odd sizes, 1 pixel wide or high, at every edge, smaller and larger than the
        // input, the whole frame.
        let rects = [
            [w / 2, 0, w / 2, h],
            [0, 0, w, h],
            [13, 7, 333, 101],
            [w - 97, h - 211, 97, 211],
            [5, 9, 1, 150],
            [0, h - 1, 300, 1],
            [w - 50, 20, 50, 50],
            [101, 57, 3, 2],
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = frame.data_bytes().expect("continuous");
        std::fs::write(dir.path().join("frame.rgb"), rgb(bytes)).expect("write");
        let mut cases = Vec::new();
        let mut ours = Vec::new();
        for (gname, geometry, interp, iname) in geometries {
            let s = spec(geometry, interp);
            let mut pre = Preprocessor::new(s);
            let mut tensor = vec![0f32; s.tensor_len()];
            for r in rects {
                for fit in [Fit::Crop, Fit::Pad, Fit::Stretch] {
                    let rect = Rect {
                        x: r[0],
                        y: r[1],
                        width: r[2],
                        height: r[3],
                    };
                    let plan = s.plan_region(rect, fit, pad, w, h).expect("inside");
                    pre.run_region_into(&frame, &plan, &mut tensor)
                        .expect("preprocess");
                    let out = format!("case{}.rgb", cases.len());
                    cases.push(json!({
                        "rect": r, "fit": fit.as_str(), "geometry": gname,
                        "resize_shorter": 256, "crop_fraction": 0.875, "crop": 224,
                        "interpolation": iname, "pad_rgb": pad, "out": out,
                    }));
                    ours.push((
                        format!("{gname} {iname} {r:?} {}", fit.as_str()),
                        plan,
                        rgb(pre.pixels()),
                    ));
                }
            }
        }
        let spec_file = dir.path().join("cases.json");
        let doc = json!({"frame": "frame.rgb", "width": w, "height": h, "cases": cases});
        std::fs::write(&spec_file, doc.to_string()).expect("write");
        let script = common::repo().join("tests/support/region_reference.py");
        let py = common::repo().join(".venv/bin/python");
        let run = Command::new(&py)
            .arg(&script)
            .arg(&spec_file)
            .output()
            .expect("python");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let lines: Vec<Value> = String::from_utf8_lossy(&run.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), ours.len());
        for (i, ((what, plan, pixels), line)) in ours.iter().zip(&lines).enumerate() {
            let theirs = std::fs::read(dir.path().join(format!("case{i}.rgb"))).expect("read");
            assert_eq!(pixels.len(), 224 * 224 * 3, "{what}");
            let differ = pixels.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            assert!(
                theirs.len() == pixels.len() && differ == 0,
                "{what}: {differ} of {} bytes differ from Pillow",
                theirs.len()
            );
            assert_eq!(
                line["input_rect"],
                json!(plan.input_rect.to_array()),
                "{what}"
            );
        }
    }
}
