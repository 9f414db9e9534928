//! Heap allocations per frame in the steady state, counted by a counting global allocator
//! around the real pipeline (real clip, real model, real broker) running in this process.
//!
//! Frame-sized buffers (decoded images, input tensors) are reused: between frame 100 and
//! frame 300 not one allocation of 64 KiB or more happens. What remains per frame is small
//! and bounded: the MQTT message itself (its topic and payload, owned by the client until
//! the broker confirms it) and ONNX Runtime's Rust API (its input list and output map).
//! The counter sees Rust allocations only; OpenCV and ONNX Runtime allocate in C++, and
//! the image reuse is what keeps OpenCV from allocating a frame per frame.

#![allow(unsafe_code)] // a GlobalAlloc implementation is unsafe by definition

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, fixtures, Broker, PATIENCE};
use streamclassd::config::Config;
use streamclassd::pipeline::{self, RunOptions};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static LARGE: AtomicU64 = AtomicU64::new(0);
const LARGE_BYTES: usize = 64 * 1024;

fn count(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(size as u64, Ordering::Relaxed);
    if size >= LARGE_BYTES {
        LARGE.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are
// added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    frames: usize,
    allocs: u64,
    bytes: u64,
    large: u64,
}

fn snapshot(frames: usize) -> Snapshot {
    Snapshot {
        frames,
        allocs: ALLOCS.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
        large: LARGE.load(Ordering::Relaxed),
    }
}

#[test]
fn the_steady_state_allocates_no_frame_sized_buffer() {
    let broker = Broker::start();
    // The subscriber runs in its own process so its allocations are not counted.
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-p",
            &broker.port.to_string(),
            "-t",
            "alloc/c/labels",
            "-q",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (scripts/setup installs mosquitto-clients)");
    let lines = std::io::BufReader::new(sub.stdout.take().expect("stdout"));
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for _ in lines.lines() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    let clip = fixtures().join("clip100.mp4").display().to_string();
    let model = fixtures().join("resnet18.onnx").display().to_string();
    let text = config(broker.port, "alloc", &[("c", &clip, 0.0)], "max_batch = 1")
        .replace(&common::model().display().to_string(), &model);
    let cfg = Config::parse(&text, Path::new(".")).expect("config");
    let opts = RunOptions {
        ort_library: Some(common::ort_library()),
        shutdown_grace: Duration::from_secs(10),
        config_path: None,
        reload: Arc::new(AtomicBool::new(false)),
        summary_json: None,
        wake: None,
    };
    let run =
        std::thread::spawn(move || pipeline::run(cfg, opts, Arc::new(AtomicBool::new(false))));

    let wait_for = |n: u64| {
        let deadline = Instant::now() + PATIENCE;
        while seen.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "only {} messages",
                seen.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        snapshot(seen.load(Ordering::Relaxed) as usize)
    };
    let a = wait_for(100);
    let b = wait_for(300);
    let summary = run.join().expect("pipeline thread").expect("pipeline run");
    let _ = sub.kill();
    let _ = sub.wait();
    assert_eq!(
        summary
            .cameras
            .iter()
            .map(|c| c.published)
            .collect::<Vec<_>>(),
        vec![400],
        "every frame classified"
    );

    let frames = (b.frames - a.frames) as f64;
    let allocs = (b.allocs - a.allocs) as f64 / frames;
    let bytes = (b.bytes - a.bytes) as f64 / frames;
    eprintln!(
        "steady state over {frames} frames: {allocs:.1} allocations, {bytes:.0} bytes per frame, \
         {} of {} KiB or more",
        b.large - a.large,
        LARGE_BYTES / 1024
    );
    assert_eq!(
        b.large - a.large,
        0,
        "a frame-sized buffer was allocated per frame"
    );
    // 224x224x3 float tensors are 602 KB and a 640x360 image 691 KB: what is left per frame
    // is a few small allocations.
    assert!(bytes < 8192.0, "{bytes:.0} bytes per frame");
    assert!(allocs < 32.0, "{allocs:.1} allocations per frame");
}
