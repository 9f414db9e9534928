//! Pure math on one output row: probability detection, softmax, top-k.

use crate::messages::Scored;

/// Tolerance on the row sum when deciding that an output is already a distribution.
const SUM_TOLERANCE: f32 = 1e-3;

/// True when `row` already is a probability distribution: every value in [0, 1] and the
/// sum 1 within [`SUM_TOLERANCE`]. Such outputs (a model that ends in Softmax) must not be
/// softmaxed again, which would flatten them towards uniform.
pub fn is_distribution(row: &[f32]) -> bool {
    let mut sum = 0f64;
    for &v in row {
        if !(0.0..=1.0).contains(&v) {
            return false;
        }
        sum += f64::from(v);
    }
    (sum - 1.0).abs() <= f64::from(SUM_TOLERANCE)
}

/// Numerically stable softmax in place (subtracts the maximum first). NaN inputs give NaN.
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// Turns a raw output row into probabilities: softmax unless it already is a distribution.
pub fn to_probabilities(row: &mut [f32]) {
    if !is_distribution(row) {
        softmax_in_place(row);
    }
}

/// Orders candidates: higher score first; on equal scores the lower class index first;
/// NaN ranks below every number.
fn better(a: Scored, b: Scored) -> bool {
    match (a.score.is_nan(), b.score.is_nan()) {
        (false, true) => true,
        (true, false) => false,
        (true, true) => a.index < b.index,
        (false, false) => a.score > b.score || (a.score == b.score && a.index < b.index),
    }
}

/// The `k` best classes of `row`, best first, into `out` (cleared first). Deterministic:
/// ties go to the lower index. O(n·k), which for k ≤ 10 beats sorting 1000 values.
pub fn top_k_into(row: &[f32], k: usize, out: &mut Vec<Scored>) {
    out.clear();
    let k = k.min(row.len());
    if k == 0 {
        return;
    }
    for (index, &score) in row.iter().enumerate() {
        let cand = Scored { index, score };
        if out.len() == k {
            match out.last() {
                Some(&worst) if better(cand, worst) => {
                    out.pop();
                }
                _ => continue,
            }
        }
        let pos = out
            .iter()
            .position(|&s| better(cand, s))
            .unwrap_or(out.len());
        out.insert(pos, cand);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top(row: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut out = Vec::new();
        top_k_into(row, k, &mut out);
        out.into_iter().map(|s| (s.index, s.score)).collect()
    }

    #[test]
    fn picks_the_best_in_descending_order() {
        let row = [0.1, 0.7, 0.05, 0.9, 0.3, 0.2];
        assert_eq!(top(&row, 3), vec![(3, 0.9), (1, 0.7), (4, 0.3)]);
        assert_eq!(top(&row, 10).len(), 6);
        assert!(top(&row, 0).is_empty());
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let row = [0.5, 0.2, 0.5, 0.5, 0.1];
        assert_eq!(top(&row, 2), vec![(0, 0.5), (2, 0.5)]);
        let flat = [0.001f32; 1000];
        let idx: Vec<usize> = top(&flat, 5).into_iter().map(|(i, _)| i).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn nan_ranks_last() {
        let row = [f32::NAN, 0.2, f32::NAN, -1.0];
        let idx: Vec<usize> = top(&row, 4).into_iter().map(|(i, _)| i).collect();
        assert_eq!(idx, vec![1, 3, 0, 2]);
    }

    #[test]
    fn matches_a_full_sort() {
        let mut seed = 7u64;
        let row: Vec<f32> = (0..1000)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) % 997) as f32 / 997.0
            })
            .collect();
        let mut sorted: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(top(&row, 5), sorted[..5].to_vec());
    }

    #[test]
    fn detects_distributions() {
        assert!(is_distribution(&[0.25, 0.25, 0.5]));
        assert!(is_distribution(&[0.001; 1000]));
        assert!(!is_distribution(&[0.5, 0.6]));
        assert!(!is_distribution(&[1.5, -0.5]));
        assert!(!is_distribution(&[2.0, 3.0, -1.0]));
        assert!(!is_distribution(&[f32::NAN, 1.0]));
    }

    #[test]
    fn softmax_only_when_needed() {
        let mut logits = [1.0f32, 2.0, 3.0];
        to_probabilities(&mut logits);
        let e = [1f32.exp(), 2f32.exp(), 3f32.exp()];
        let s: f32 = e.iter().sum();
        for (got, want) in logits.iter().zip(e.iter().map(|x| x / s)) {
            assert!((got - want).abs() < 1e-6);
        }
        let mut probs = [0.2f32, 0.3, 0.5];
        to_probabilities(&mut probs);
        assert_eq!(probs, [0.2, 0.3, 0.5]);
        // Large logits do not overflow.
        let mut big = [1000.0f32, 999.0];
        to_probabilities(&mut big);
        assert!((big[0] + big[1] - 1.0).abs() < 1e-6 && big[0] > big[1]);
    }
}
