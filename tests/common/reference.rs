//! The independent Python reference's verdicts (`tests/reference/classify.py`) and the
//! check that the daemon's top-5 agrees with them.

use serde_json::Value;

/// The reference's top-k and every class probability for one frame (or one region of it).
pub struct RefTop {
    pub top: Vec<usize>,
    pub probs: Vec<f64>,
}

impl RefTop {
    /// From the reference's JSON for one frame or region (`top`, `probs`).
    pub fn parse(v: &Value) -> RefTop {
        let numbers = |key: &str| -> Vec<f64> {
            v[key]
                .as_array()
                .unwrap_or_else(|| panic!("reference without {key:?}"))
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect()
        };
        RefTop {
            top: numbers("top").into_iter().map(|x| x as usize).collect(),
            probs: numbers("probs"),
        }
    }
}

/// Where the daemon's top-5 differs from the reference's, the reference's own
/// probabilities for the two classes must be within this factor (|Δ log p| ≤ 0.01, i.e. a
/// 1% near-tie). Why any difference is possible at all: the daemon links Debian's OpenCV
/// and runs ONNX Runtime with 2 threads (and in batches), the reference uses the PyPI
/// OpenCV and 1 thread; bilinear resize rounding and float summation order differ in the
/// last bits, which can only swap classes whose scores are that close.
pub const NEAR_TIE_LOG_PROB: f64 = 0.01;

/// Checks one label message's `top5` against the reference `r` (`what` names it in
/// failures); returns the rank positions swapped within the near-tie tolerance.
pub fn assert_top_matches(msg: &Value, r: &RefTop, what: &str) -> usize {
    let mut swaps = 0;
    let top5 = msg["top5"].as_array().expect("top5");
    let got: Vec<usize> = top5
        .iter()
        .map(|e| e["index"].as_u64().expect("index") as usize)
        .collect();
    for (rank, (&g, &want)) in got.iter().zip(&r.top).enumerate() {
        if g != want {
            let dl = (r.probs[g].ln() - r.probs[want].ln()).abs();
            assert!(
                dl <= NEAR_TIE_LOG_PROB,
                "{what} rank {rank}: got class {g}, reference {want} \
                 (reference log-probs differ by {dl:.4})"
            );
            swaps += 1;
        }
    }
    // Scores agree with the reference's probabilities for the same classes.
    for e in top5 {
        let idx = e["index"].as_u64().expect("index") as usize;
        let score = e["score"].as_f64().expect("score");
        assert!(
            (score - r.probs[idx]).abs() <= 1e-3 + 1e-2 * r.probs[idx],
            "{what} class {idx}: score {score} vs reference {}",
            r.probs[idx]
        );
    }
    swaps
}
