//! Faithful to the model: on real footage (a clip of real photos with zoom and pan), the
//! daemon's own decode → preprocess → inference code gives the same answers as an
//! independent Python reference that resizes with Pillow, as the models were evaluated.
//!
//! Figures are printed (run with `--nocapture`), next to what OpenCV's plain resize gets
//! against the same reference.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use opencv::prelude::*;
use opencv::videoio::{VideoCapture, CAP_FFMPEG};
use serde_json::Value;
use streamclassd::config::Config;
use streamclassd::inference::{load_runtime, open_workers, Runtime};
use streamclassd::labels::Labels;
use streamclassd::preprocess::Preprocessor;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| load_runtime(Some(&common::ort_library())).expect("ONNX Runtime"))
}

fn photos() -> PathBuf {
    common::fixtures().join("photos.mp4")
}

/// Raw output rows, one per frame of `video`, through the daemon's own stages.
fn daemon_logits(model: &Path, preprocess: &str, video: &Path) -> Vec<Vec<f32>> {
    logits_with(model, preprocess, video, "threads = 2")
}

/// As [`daemon_logits`], with the workers and threads `parallel` gives: frame i runs on
/// worker i mod the number of workers, as the daemon opens them.
fn logits_with(model: &Path, preprocess: &str, video: &Path, parallel: &str) -> Vec<Vec<f32>> {
    let text = format!(
        "[model]\npath = {:?}\n{parallel}\n[model.preprocess]\n{preprocess}\n\
         [[camera]]\nid = \"x\"\nsource = \"x\"\n",
        model.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new(".")).expect("config").model;
    let (mut workers, spec) = open_workers(&cfg, runtime()).expect("model");
    let mut pre = Preprocessor::new(spec);
    let mut cap = VideoCapture::from_file(video, CAP_FFMPEG).expect("open");
    let mut tensor = vec![0f32; spec.tensor_len()];
    let mut rows = Vec::new();
    loop {
        let mut frame = opencv::core::Mat::default();
        if !cap.read(&mut frame).expect("read") || frame.empty() {
            break;
        }
        pre.run_into(&frame, &mut tensor).expect("preprocess");
        let n = workers.len();
        let worker = &mut workers[rows.len() % n];
        let (_, row) = worker.logits(&[tensor.as_slice()]).expect("inference");
        rows.push(row.to_vec());
    }
    rows
}

fn reference_logits(name: &str) -> Vec<Vec<f32>> {
    let text = std::fs::read_to_string(common::fixtures().join(name)).expect(name);
    let v: Value = serde_json::from_str(&text).expect("json");
    v["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            f["logits"]
                .as_array()
                .expect("logits")
                .iter()
                .map(|x| x.as_f64().expect("float") as f32)
                .collect()
        })
        .collect()
}

fn top(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

#[derive(Debug)]
struct Agreement {
    frames: usize,
    top1: f64,
    top5_set: f64,
    cos_min: f64,
    cos_mean: f64,
}

fn agreement(got: &[Vec<f32>], want: &[Vec<f32>]) -> Agreement {
    assert_eq!(got.len(), want.len(), "frame counts differ");
    let n = got.len();
    let (mut t1, mut t5, mut cmin, mut csum) = (0usize, 0usize, f64::INFINITY, 0f64);
    for (g, w) in got.iter().zip(want) {
        t1 += usize::from(top(g, 1) == top(w, 1));
        let (mut a, mut b) = (top(g, 5), top(w, 5));
        a.sort_unstable();
        b.sort_unstable();
        t5 += usize::from(a == b);
        let c = cosine(g, w);
        cmin = cmin.min(c);
        csum += c;
    }
    Agreement {
        frames: n,
        top1: t1 as f64 / n as f64,
        top5_set: t5 as f64 / n as f64,
        cos_min: cmin,
        cos_mean: csum / n as f64,
    }
}

fn report(what: &str, a: &Agreement) {
    eprintln!(
        "{what}: {} frames, top-1 identical {:.2}%, top-5 set identical {:.2}%, \
         cosine min {:.6} mean {:.6}",
        a.frames,
        a.top1 * 100.0,
        a.top5_set * 100.0,
        a.cos_min,
        a.cos_mean
    );
}

/// The bar: top-1 ≥ 99.5%, top-5 set ≥ 98%, cosine ≥ 0.999 (here on every frame).
fn assert_faithful(a: &Agreement) {
    assert!(a.top1 >= 0.995, "{a:?}");
    assert!(a.top5_set >= 0.98, "{a:?}");
    assert!(a.cos_min >= 0.999, "{a:?}");
}

#[test]
fn tf_efficientnet_lite_preset_matches_the_pillow_reference_on_real_photos() {
    let model = common::repo().join("models/efficientnet-lite0.onnx");
    let got = daemon_logits(&model, "preset = \"tf-efficientnet-lite\"", &photos());
    let pil = reference_logits("ref-effnet-pil.json");
    let ours = agreement(&got, &pil);
    report(
        "EfficientNet-Lite0 tf-efficientnet-lite, streamclassd vs Pillow reference",
        &ours,
    );
    report(
        "EfficientNet-Lite0 tf-efficientnet-lite, OpenCV resize vs Pillow reference",
        &agreement(&reference_logits("ref-effnet-opencv.json"), &pil),
    );
    assert_faithful(&ours);

    // The weights are real: every photo segment of the clip (20 frames each, see
    // scripts/gen/make_photo_clip.py) is recognised.
    let labels = Labels::load(&streamclassd::labels::LabelsSource::ImageNet).expect("labels");
    let expected: [&[&str]; 5] = [
        &["tabby", "tiger cat", "Egyptian cat"],
        &["espresso", "cup", "coffee mug"],
        &["missile", "projectile", "space shuttle"],
        &["moped", "motor scooter"],
        &["tripod", "reflex camera"],
    ];
    for (segment, names) in expected.iter().enumerate() {
        let frames = &got[segment * 20..(segment + 1) * 20];
        let hits = frames
            .iter()
            .filter(|row| names.contains(&labels.get(top(row, 1)[0])))
            .count();
        assert!(
            hits >= 16,
            "segment {segment} ({names:?}): top-1 right on {hits}/20"
        );
        for row in frames {
            let top5: Vec<&str> = top(row, 5).into_iter().map(|i| labels.get(i)).collect();
            assert!(
                top5.iter().any(|l| names.contains(l)),
                "segment {segment}: {top5:?}"
            );
        }
    }
}

#[test]
fn torchvision_preset_matches_the_pillow_reference_on_real_photos() {
    let model = common::fixtures().join("resnet18.onnx");
    let got = daemon_logits(&model, "preset = \"torchvision\"", &photos());
    let pil = reference_logits("ref-resnet18-pil.json");
    let ours = agreement(&got, &pil);
    report(
        "ResNet-18 torchvision, streamclassd vs Pillow reference",
        &ours,
    );
    report(
        "ResNet-18 torchvision, OpenCV resize vs Pillow reference",
        &agreement(&reference_logits("ref-resnet18-opencv.json"), &pil),
    );
    assert_faithful(&ours);
}

#[test]
fn caffe_preset_matches_the_reference() {
    let model = common::fixtures().join("resnet18.onnx");
    let got = daemon_logits(&model, "preset = \"caffe\"", &photos());
    let ours = agreement(&got, &reference_logits("ref-resnet18-caffe.json"));
    report("ResNet-18 caffe preset, streamclassd vs reference", &ours);
    assert_faithful(&ours);
}

/// Workers that share one copy of the weights (the graph optimized once, its initializers
/// handed to every session) answer as one session that optimized the model itself: real
/// weights in float32, float16 and INT8, and a ResNet, on real photos.
#[test]
fn workers_sharing_the_weights_give_the_answers_of_one_session() {
    let int8 = common::fixtures().join("efficientnet-lite0-int8.onnx");
    let fp16 = common::fixtures().join("efficientnet-lite0-fp16.onnx");
    let models = [
        (fp16, "preset = \"tf-efficientnet-lite\""),
        (
            common::repo().join("models/efficientnet-lite0.onnx"),
            "preset = \"tf-efficientnet-lite\"",
        ),
        (int8, "preset = \"tf-efficientnet-lite\""),
        (
            common::fixtures().join("resnet18.onnx"),
            "preset = \"torchvision\"",
        ),
    ];
    for (model, preset) in &models {
        let one = logits_with(model, preset, &photos(), "threads = 1");
        let shared = logits_with(model, preset, &photos(), "workers = 3\nthreads = 1");
        assert_eq!(one.len(), shared.len());
        assert!(one.len() >= 60, "{} frames", one.len());
        let mut worst = 0f32;
        for (a, b) in one.iter().zip(&shared) {
            assert_eq!(top(a, 5), top(b, 5), "{}", model.display());
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1.0);
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            worst = worst.max(diff / scale);
        }
        println!(
            "{}: {} frames, largest difference {worst:.2e} of the largest logit",
            model.display(),
            one.len()
        );
        assert!(worst <= 1e-5, "{}: {worst}", model.display());
    }
}
