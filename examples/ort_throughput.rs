//! Bare ONNX Runtime throughput for a model, with the daemon's own session settings and
//! pre-made input tensors: the ceiling the end-to-end pipeline is compared against.
//!
//! ```text
//! cargo run --release --example ort_throughput -- MODEL.onnx [THREADS] [FRAMES] [REPEATS] [PROVIDER]
//! ```
//! PROVIDER: `cpu` (default), `cuda` or `tensorrt` (as `[model] execution_provider`).
//! Prints the median frames/s over REPEATS runs of FRAMES single-frame inferences.

use std::path::{Path, PathBuf};
use std::time::Instant;

use streamclassd::config::Config;
use streamclassd::inference::{load_runtime, InferenceWorker};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = PathBuf::from(args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: ort_throughput MODEL [THREADS] [FRAMES] [REPEATS] [PROVIDER]")
    })?);
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let frames: usize = args.get(3).map_or(Ok(100), |s| s.parse())?;
    let repeats: usize = args.get(4).map_or(Ok(3), |s| s.parse())?;
    let provider = args.get(5).map_or("cpu", String::as_str);
    let runtime = load_runtime(None)?;
    let text = format!(
        "[model]\npath = {:?}\nthreads = {threads}\nmax_batch = 1\nexecution_provider = {provider:?}\n[[camera]]\nid = \"x\"\nsource = \"x\"\n",
        model.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("."))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .model;
    let (mut worker, spec) = InferenceWorker::open(&cfg, &runtime)?;
    let mut seed = 1u32;
    let tensor: Vec<f32> = (0..spec.tensor_len())
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    for _ in 0..5 {
        worker.classify(&[tensor.as_slice()])?;
    }
    let mut rates = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        for _ in 0..frames {
            worker.classify(&[tensor.as_slice()])?;
        }
        rates.push(frames as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "bare ONNX Runtime ({provider}): {:.2} frames/s median over {repeats} x {frames} frames (threads {threads}; runs {:?})",
        rates[rates.len() / 2],
        rates.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    Ok(())
}
