//! Bare ONNX Runtime with frames in parallel: WORKERS sessions, each on its own thread
//! with THREADS intra-op threads, each running whole frames, against one session; the
//! daemon's own session settings and pre-made input tensors.
//!
//! ```text
//! cargo run --release --example ort_workers -- MODEL.onnx [WORKERS] [THREADS] [FRAMES] [REPEATS] [shared|separate]
//! ```
//! Prints the total frames/s (median over REPEATS runs of FRAMES frames per worker, all
//! workers at once) and the process's resident memory once the sessions are open:
//! `shared` (the default) opens the workers as the daemon does (one copy of the
//! optimized weights for all), `separate` lets each session keep its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use streamclassd::config::Config;
use streamclassd::inference::{load_runtime, open_workers, InferenceWorker};

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ort_workers MODEL [WORKERS] [THREADS] [FRAMES] [REPEATS] [shared|separate]";
    let model = PathBuf::from(args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?);
    let workers: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let threads: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let frames: usize = args.get(4).map_or(Ok(50), |s| s.parse())?;
    let repeats: usize = args.get(5).map_or(Ok(3), |s| s.parse())?;
    let shared = match args.get(6).map(String::as_str) {
        None | Some("shared") => true,
        Some("separate") => false,
        Some(other) => anyhow::bail!("{other:?}: expected shared or separate\n{usage}"),
    };
    let runtime = load_runtime(None)?;
    let text = format!(
        "[model]\npath = {:?}\nthreads = {threads}\nworkers = {workers}\nmax_batch = 1\n[[camera]]\nid = \"x\"\nsource = \"x\"\n",
        model.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("."))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .model;
    let before = rss_mb();
    let (sessions, len) = if shared {
        let (sessions, spec) = open_workers(&cfg, &runtime)?;
        (sessions, spec.tensor_len())
    } else {
        let mut sessions = Vec::with_capacity(workers);
        let mut len = 0;
        for _ in 0..workers {
            let (worker, spec) = InferenceWorker::open(&cfg, &runtime)?;
            len = spec.tensor_len();
            sessions.push(worker);
        }
        (sessions, len)
    };
    let opened = rss_mb();
    let mut seed = 1u32;
    let tensor: Arc<Vec<f32>> = Arc::new(
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect(),
    );
    let start = Arc::new(Barrier::new(workers));
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|mut worker| {
            let (tensor, start) = (tensor.clone(), start.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                for _ in 0..3 {
                    worker.classify(&[tensor.as_slice()])?;
                }
                let mut ends = Vec::with_capacity(repeats);
                for _ in 0..repeats {
                    start.wait();
                    let t = Instant::now();
                    for _ in 0..frames {
                        worker.classify(&[tensor.as_slice()])?;
                    }
                    ends.push(t.elapsed().as_secs_f64());
                }
                Ok(ends)
            })
        })
        .collect();
    let mut per_worker = Vec::new();
    for h in handles {
        per_worker.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??,
        );
    }
    // Each run's total rate: every worker's frames over the slowest worker's time.
    let mut rates: Vec<f64> = (0..repeats)
        .map(|r| {
            let slowest = per_worker.iter().map(|w| w[r]).fold(0.0, f64::max);
            (workers * frames) as f64 / slowest
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "{workers} worker(s) x {threads} thread(s), {}: {:.2} frames/s median over {repeats} runs ({:?}); RSS {:.0} MB with the sessions open ({:.0} MB for them)",
        if shared { "shared weights" } else { "separate weights" },
        rates[rates.len() / 2],
        rates.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>(),
        opened,
        opened - before
    );
    Ok(())
}
