//! Any reasonable ImageNet classifier runs without code changes: NHWC or NCHW, float32 or
//! float16 input, INT8 (QDQ), with or without a final Softmax; an unusable model gets a
//! clear error. Variants of the real EfficientNet-Lite0 made by
//! `scripts/gen/make_model_variants.py` and `scripts/gen/quantize_int8.py`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use opencv::prelude::*;
use opencv::videoio::{VideoCapture, CAP_FFMPEG};
use streamclassd::config::Config;
use streamclassd::inference::{load_runtime, InferenceWorker, ModelError, Runtime};
use streamclassd::preprocess::{Layout, Preprocessor};

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| load_runtime(Some(&common::ort_library())).expect("ONNX Runtime"))
}

fn variant(suffix: &str) -> PathBuf {
    common::fixtures().join(format!("efficientnet-lite0{suffix}.onnx"))
}

fn open(
    model: &Path,
) -> Result<(InferenceWorker, streamclassd::preprocess::PreprocessSpec), ModelError> {
    let text = format!(
        "[model]\npath = {:?}\nthreads = 2\n[model.preprocess]\npreset = \"tf-efficientnet-lite\"\n\
         [[camera]]\nid = \"x\"\nsource = \"x\"\n",
        model.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new(".")).expect("config").model;
    InferenceWorker::open(&cfg, runtime())
}

/// Raw outputs for every 6th frame of the photo clip (20 frames, all six photos).
fn outputs(model: &Path) -> (Vec<Vec<f32>>, Layout) {
    outputs_where(model, |index| index % 6 == 0)
}

/// Raw outputs for the frames of the photo clip whose index `take` accepts, in order.
fn outputs_where(model: &Path, take: impl Fn(u64) -> bool) -> (Vec<Vec<f32>>, Layout) {
    let (mut worker, spec) = open(model).expect("model opens");
    let mut pre = Preprocessor::new(spec);
    let mut cap = VideoCapture::from_file(common::fixtures().join("photos.mp4"), CAP_FFMPEG)
        .expect("open clip");
    let mut tensor = vec![0f32; spec.tensor_len()];
    let mut rows = Vec::new();
    let mut index = 0;
    loop {
        let mut frame = opencv::core::Mat::default();
        if !cap.read(&mut frame).expect("read") || frame.empty() {
            break;
        }
        if take(index) {
            pre.run_into(&frame, &mut tensor).expect("preprocess");
            rows.push(worker.logits(&[tensor.as_slice()]).expect("run").1.to_vec());
        }
        index += 1;
    }
    (rows, spec.layout)
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn base() -> &'static Vec<Vec<f32>> {
    static BASE: OnceLock<Vec<Vec<f32>>> = OnceLock::new();
    BASE.get_or_init(|| {
        let (rows, layout) = outputs(&common::repo().join("models/efficientnet-lite0.onnx"));
        assert_eq!(layout, Layout::Nchw);
        rows
    })
}

#[test]
fn nhwc_model_gives_the_same_logits() {
    let (rows, layout) = outputs(&variant("-nhwc"));
    assert_eq!(layout, Layout::Nhwc, "layout read from the model");
    assert_eq!(rows.len(), base().len());
    for (a, b) in rows.iter().zip(base()) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "NHWC logits differ by {worst}");
    }
}

#[test]
fn float16_model_is_fed_float16_and_agrees() {
    let (rows, _) = outputs(&variant("-fp16"));
    for (a, b) in rows.iter().zip(base()) {
        assert_eq!(argmax(a), argmax(b));
        // float16 keeps ~3 significant digits: logits of magnitude ~10 move by ~0.01-0.05.
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 0.25, "fp16 logits differ by {worst}");
    }
}

#[test]
fn softmax_output_is_not_softmaxed_again() {
    let model = variant("-softmax");
    let (mut worker, spec) = open(&model).expect("model opens");
    let (rows, _) = outputs(&model);
    for (probs, logits) in rows.iter().zip(base()) {
        let want = softmax(logits);
        for (p, w) in probs.iter().zip(&want) {
            assert!((f64::from(*p) - w).abs() < 1e-5);
        }
    }
    // classify() reports those probabilities unchanged (a second softmax would squash the
    // top score towards 1/1000·e^p).
    let tensor = vec![0.1f32; spec.tensor_len()];
    let raw = worker.logits(&[tensor.as_slice()]).expect("run").1.to_vec();
    let top = worker.classify(&[tensor.as_slice()]).expect("classify");
    let best = argmax(&raw);
    assert_eq!(top[0][0].index, best);
    assert_eq!(top[0][0].score, raw[best]);
}

#[test]
fn int8_qdq_model_runs_and_mostly_agrees_with_float32() {
    let (rows, _) = outputs(&variant("-int8"));
    let same = rows
        .iter()
        .zip(base())
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    eprintln!("INT8 vs FP32 top-1 agreement: {same}/{} frames", rows.len());
    assert!(
        same * 10 >= rows.len() * 8,
        "INT8 top-1 agrees on only {same}/{}",
        rows.len()
    );
}

/// The INT8 fixture's report (`scripts/gen/quantize_int8.py --report-json`): agreement
/// measured on frames the calibration never saw, and the figure those frames give.
#[test]
fn the_int8_report_measures_agreement_on_frames_kept_out_of_calibration() {
    let path = common::fixtures().join("efficientnet-lite0-int8.report.json");
    let text = std::fs::read_to_string(&path).expect("the INT8 fixture's report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let frames = |key: &str| -> std::collections::BTreeSet<(String, u64)> {
        report[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {text}"))
            .iter()
            .map(|f| {
                let source = f[0].as_str().expect("source").to_owned();
                (source, f[1].as_u64().expect("index"))
            })
            .collect()
    };
    let (calibration, held_out) = (frames("calibration"), frames("held_out"));
    assert!(!calibration.is_empty() && !held_out.is_empty(), "{text}");
    assert!(
        calibration.is_disjoint(&held_out),
        "frames both calibrated on and reported on: {:?}",
        calibration.intersection(&held_out).collect::<Vec<_>>()
    );
    // The fixture's selection: even frames calibrate, odd ones are held out.
    assert!(
        calibration.iter().all(|(_, i)| i % 2 == 0),
        "{calibration:?}"
    );
    assert!(held_out.iter().all(|(_, i)| i % 2 == 1), "{held_out:?}");
    let agreement = &report["agreement"];
    assert_eq!(agreement["frames"].as_u64(), Some(held_out.len() as u64));
    // The daemon's own preprocessing and sessions on the frames the report names give
    // its top-1 figure (within two frames: a near-tie may fall either way).
    let named: std::collections::BTreeSet<u64> = held_out.iter().map(|(_, i)| *i).collect();
    let take = |i: u64| named.contains(&i);
    let fp32 = outputs_where(&common::repo().join("models/efficientnet-lite0.onnx"), take).0;
    let int8 = outputs_where(&variant("-int8"), take).0;
    assert_eq!((fp32.len(), int8.len()), (named.len(), named.len()));
    let same = fp32
        .iter()
        .zip(&int8)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count() as u64;
    let reported = agreement["top1_same"].as_u64().expect("top1_same");
    assert!(
        same.abs_diff(reported) <= 2,
        "report says {reported} of {} top-1 identical, the frames give {same}",
        named.len()
    );
}

#[test]
fn a_model_without_an_image_input_is_a_clear_error() {
    let err = open(&variant("-bad-input"))
        .err()
        .expect("must be rejected");
    let text = err.to_string();
    assert!(matches!(err, ModelError::UnsupportedInput { .. }), "{text}");
    assert!(
        text.contains("[-1, 1, 28, 28]") || text.contains("1, 28, 28"),
        "{text}"
    );
    assert!(text.contains("3-channel"), "{text}");
    let err = open(&variant("-bad-output"))
        .err()
        .expect("must be rejected");
    assert!(matches!(err, ModelError::UnsupportedOutput { .. }), "{err}");
}
