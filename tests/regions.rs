//! Regions of interest, exact to the model's preprocessing: on real frames (a clip of real
//! photos), every fit of every region gives the pixels an independent Pillow reference
//! gets by cutting the region out and fitting it step by step
//! (`tests/support/region_reference.py`), byte for byte, and the same `input_rect`; and
//! end to end, a camera with the whole frame and five regions (one in fractions of the
//! frame) publishes each on its own topic, frame by frame what the Python reference
//! classifies.

mod common;

use std::process::Command;

use common::reference::{assert_top_matches, RefTop};
use common::{config, fixtures, Broker, Daemon, Subscriber, PATIENCE};

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

/// `[[camera.region]]` tables for the regions of `tests/reference/clip-regions.json`.
fn region_tables(regions: &[Value]) -> String {
    let mut out = String::new();
    for r in regions {
        let (key, place) = match r.get("rect_fraction") {
            Some(f) => ("rect_fraction", f),
            None => ("rect", &r["rect"]),
        };
        out += &format!(
            "\n[[camera.region]]\nname = \"{}\"\n{key} = {place}\nfit = \"{}\"\n",
            r["name"].as_str().expect("name"),
            r["fit"].as_str().expect("fit")
        );
        if let Some(c) = r.get("pad_color") {
            out += &format!("pad_color = {c}\n");
        }
        if let Some(f) = r["fps"].as_f64() {
            out += &format!("fps = {f}\n");
        }
    }
    out
}

#[test]
fn each_region_is_published_on_its_topic_as_the_reference_classifies_it() {
    let text = std::fs::read_to_string(common::repo().join("tests/reference/clip-regions.json"))
        .expect("regions");
    let regions: Vec<Value> = serde_json::from_str(&text).expect("regions json");
    // The default padding is the preset's mean, which is what the reference pads with.
    let strip = regions
        .iter()
        .find(|r| r["name"] == "strip")
        .expect("strip");
    assert!(strip.get("pad_color").is_none() && strip["pad_rgb"] == json!([124, 116, 104]));
    let text = std::fs::read_to_string(fixtures().join("ref-regions.json")).expect("reference");
    let reference: Value = serde_json::from_str(&text).expect("reference json");
    let frames = reference["frames"].as_array().expect("frames");

    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "roi/#");
    let clip = fixtures().join("clip.mp4").display().to_string();
    let admin = common::stable_port();
    let cfg = config(broker.port, "roi", &[("yard", &clip, 0.0)], "max_batch = 4\n")
        + &region_tables(&regions)
        // clip.mp4 is 640x360: this one is not inside it.
        + "\n[[camera.region]]\nname = \"outside\"\nrect = [600, 300, 100, 100]\n"
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n");
    let mut daemon = Daemon::start(&cfg);
    let status = daemon.wait();
    let log = daemon.stderr();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        sub.wait_until(PATIENCE, |m| m
            .iter()
            .any(|m| m.topic == "roi/status" && m.payload == b"offline")),
        "{log}"
    );

    // The whole frame, as without regions: every frame, no region fields.
    let whole = common::labels(&sub, "roi/yard/labels");
    assert_eq!(whole.len(), frames.len(), "{log}");
    for (i, m) in whole.iter().enumerate() {
        assert_eq!(
            (m["seq"].as_u64(), m["frame"].as_u64()),
            (Some(i as u64), Some(i as u64))
        );
        assert!(
            m.get("region").is_none() && m.get("input_rect").is_none(),
            "{m}"
        );
        assert_top_matches(m, &RefTop::parse(&frames[i]), &format!("frame {i}"));
    }
    let mut swaps = 0;
    for r in &regions {
        let name = r["name"].as_str().expect("name");
        let msgs = common::labels(&sub, &format!("roi/yard/region/{name}/labels"));
        // The frames the reference classified this region in (all, or its fps's).
        let due: Vec<usize> = (0..frames.len())
            .filter(|&i| frames[i]["regions"].get(name).is_some())
            .collect();
        let got: Vec<u64> = msgs
            .iter()
            .map(|m| m["frame"].as_u64().expect("frame"))
            .collect();
        let want: Vec<u64> = due.iter().map(|&i| i as u64).collect();
        assert_eq!(got, want, "frames of region {name}");
        for (k, (m, &i)) in msgs.iter().zip(&due).enumerate() {
            let expected = &frames[i]["regions"][name];
            assert_eq!(
                m["seq"].as_u64(),
                Some(k as u64),
                "{name}: seq contiguous per region"
            );
            assert_eq!(
                (m["camera"].as_str(), m["region"].as_str()),
                (Some("yard"), Some(name))
            );
            assert_eq!(m["input_rect"], expected["input_rect"], "{name} frame {i}");
            swaps += assert_top_matches(m, &RefTop::parse(expected), &format!("{name} frame {i}"));
        }
    }
    // The region outside the frame: nothing published, its error in the camera's status
    // and logged once; the rest went on (above).
    assert!(common::labels(&sub, "roi/yard/region/outside/labels").is_empty());
    let last = sub
        .on("roi/yard/status")
        .last()
        .expect("camera status")
        .json();
    let errors = last["region_errors"].as_array().expect("region_errors");
    assert_eq!(errors.len(), 1, "{last}");
    assert_eq!(errors[0]["region"], "outside");
    assert!(
        errors[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not inside the 640x360 frame")),
        "{last}"
    );
    assert_eq!(log.matches("region not classified").count(), 1, "{log}");
    // The whole frame and the regions it can classify (not the one outside the frame).
    assert_eq!(last["fps"]["per_frame"], regions.len() + 1, "{last}");
    eprintln!(
        "regions: {} frames, whole frame + {} regions, {swaps} rank positions swapped within the near-tie tolerance",
        frames.len(),
        regions.len()
    );
}
