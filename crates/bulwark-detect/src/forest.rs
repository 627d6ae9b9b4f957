//! A streaming isolation forest (Liu, Ting & Zhou 2008), hand-written:
//! linfa and smartcore have none, and the engine needs it bounded,
//! deterministic, and fast to score a whole window at once (tree by tree).
//!
//! - Features: `log1p` of every window metric ([`features`]).
//! - Fit: `trees` trees, each on `sample_size` points drawn without
//!   replacement from a reservoir of recent fleet windows, grown to height
//!   `ceil(log2 ψ)`; a split picks a feature uniformly among those that vary
//!   in the node, and a threshold uniformly in its range.
//! - Guards: thresholds are drawn inside the node's range, so a point far
//!   beyond everything the tree saw always travels with the sample's extreme
//!   points and is isolated no faster than they are; in `log1p` space, where
//!   the fleet's upper tail is dense, such points would score as normal. And
//!   a feature constant across a tree's whole sample (auth failures are
//!   usually all zero) is never split at all. So each split node keeps its
//!   feature's range in the node, and each tree its constant features: a
//!   point further than `guard_margin` outside that range (or from that
//!   constant) is isolated right there. The margin is in `log1p` units
//!   (1.0 ≈ 2.7× the largest value seen), so normal edge points are not.
//! - Score: `s(x) = 2^(-E[h(x)] / c(ψ))`, `c(n) = 2H(n-1) - 2(n-1)/n`.
//! - Explanation: along each path, a split on feature `f` at depth `d`
//!   credits `f` with `(1 - |child| / |node|) / d`: how much of the sample
//!   it separated from the point, weighted by how early. Shares over all
//!   trees name the features that isolated the point.

use crate::metric::{Metric, Values, METRIC_COUNT};
use crate::mix::Rng;

pub(crate) type Features = [f32; METRIC_COUNT];

/// `log1p` of each metric (negative or non-finite read as 0).
pub(crate) fn features(v: &Values) -> Features {
    let mut out = [0.0f32; METRIC_COUNT];
    for (o, x) in out.iter_mut().zip(v) {
        let x = if x.is_finite() { x.max(0.0) } else { 0.0 };
        *o = x.ln_1p() as f32;
    }
    out
}

/// Average path length of an unsuccessful BST search among `n` points.
pub(crate) fn c(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Split {
        feature: u8,
        threshold: f32,
        /// The feature's range among the node's samples.
        lo: f32,
        hi: f32,
        left: u32,
        right: u32,
        size: u32,
    },
    Leaf {
        size: u32,
        /// `c(size)`, precomputed.
        rest: f32,
    },
}

impl Node {
    fn size(&self) -> u32 {
        match *self {
            Node::Split { size, .. } | Node::Leaf { size, .. } => size,
        }
    }
}

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    /// Features constant over the tree's sample, and their value.
    constants: Vec<(u8, f32)>,
    /// Per feature: the band a point must stay in (constant ± margin, or
    /// unbounded for varying features), checked branch-free first.
    band_lo: Features,
    band_hi: Features,
}

/// A fitted forest.
#[derive(Debug, Clone)]
pub(crate) struct Forest {
    trees: Vec<Tree>,
    norm: f64,
    guard_margin: f32,
}

/// A scored point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Score {
    pub score: f64,
    pub mean_depth: f64,
}

impl Forest {
    /// Fits on `data` (at least 2 points), `trees` trees of `psi` points.
    pub(crate) fn fit(
        data: &[Features],
        trees: usize,
        psi: usize,
        guard_margin: f64,
        rng: &mut Rng,
    ) -> Option<Forest> {
        let psi = psi.min(data.len());
        if psi < 2 {
            return None;
        }
        let height = (psi as f64).log2().ceil() as u32;
        let mut idx: Vec<u32> = (0..data.len() as u32).collect();
        let mut out = Vec::with_capacity(trees);
        for _ in 0..trees {
            // Partial Fisher-Yates: the first psi entries are the sample.
            for i in 0..psi {
                let j = i + rng.below(idx.len() - i);
                idx.swap(i, j);
            }
            let mut sample: Vec<u32> = idx[..psi].to_vec();
            let (lo, hi) = bounds(data, &sample);
            let constants: Vec<(u8, f32)> = (0..METRIC_COUNT)
                .filter(|&f| lo[f] == hi[f])
                .map(|f| (f as u8, lo[f]))
                .collect();
            let mut nodes = Vec::with_capacity(2 * psi);
            grow(data, &mut sample, 0, height, rng, &mut nodes);
            let margin = guard_margin as f32;
            let mut band_lo = [f32::NEG_INFINITY; METRIC_COUNT];
            let mut band_hi = [f32::INFINITY; METRIC_COUNT];
            for &(f, v) in &constants {
                band_lo[usize::from(f)] = v - margin;
                band_hi[usize::from(f)] = v + margin;
            }
            out.push(Tree {
                nodes,
                constants,
                band_lo,
                band_hi,
            });
        }
        Some(Forest {
            trees: out,
            norm: c(psi),
            guard_margin: guard_margin as f32,
        })
    }

    /// Scores many points, tree by tree so each tree stays in cache (several
    /// times faster than point by point for a whole window of entities).
    pub(crate) fn score_batch(&self, xs: &[Features], out: &mut Vec<f64>) {
        out.clear();
        out.resize(xs.len(), 0.0);
        for tree in &self.trees {
            for (x, total) in xs.iter().zip(out.iter_mut()) {
                *total += tree.path(x, self.guard_margin, None);
            }
        }
        let n = self.trees.len().max(1) as f64;
        for total in out.iter_mut() {
            *total = self.normalise(*total / n);
        }
    }

    fn normalise(&self, mean_depth: f64) -> f64 {
        if self.norm > 0.0 {
            (-mean_depth / self.norm).exp2()
        } else {
            0.5
        }
    }

    /// Scores `x`; when `explain` is given, adds each feature's credit.
    pub(crate) fn score(
        &self,
        x: &Features,
        mut explain: Option<&mut [f64; METRIC_COUNT]>,
    ) -> Score {
        let mut total = 0.0;
        for tree in &self.trees {
            total += tree.path(x, self.guard_margin, explain.as_deref_mut());
        }
        let mean = total / self.trees.len().max(1) as f64;
        Score {
            score: self.normalise(mean),
            mean_depth: mean,
        }
    }
}

fn bounds(data: &[Features], rows: &[u32]) -> (Features, Features) {
    let mut lo = [f32::INFINITY; METRIC_COUNT];
    let mut hi = [f32::NEG_INFINITY; METRIC_COUNT];
    for &r in rows {
        if let Some(x) = data.get(r as usize) {
            for f in 0..METRIC_COUNT {
                lo[f] = lo[f].min(x[f]);
                hi[f] = hi[f].max(x[f]);
            }
        }
    }
    (lo, hi)
}

/// Grows the subtree for `rows`, returns its node index.
fn grow(
    data: &[Features],
    rows: &mut [u32],
    depth: u32,
    height: u32,
    rng: &mut Rng,
    nodes: &mut Vec<Node>,
) -> u32 {
    let at = nodes.len() as u32;
    let size = rows.len() as u32;
    nodes.push(Node::Leaf {
        size,
        rest: c(rows.len()) as f32,
    });
    if depth >= height || rows.len() <= 1 {
        return at;
    }
    let (lo, hi) = bounds(data, rows);
    let mut varying = [0u8; METRIC_COUNT];
    let mut n = 0;
    for f in 0..METRIC_COUNT {
        if hi[f] > lo[f] {
            varying[n] = f as u8;
            n += 1;
        }
    }
    if n == 0 {
        return at;
    }
    let feature = varying[rng.below(n)];
    let f = usize::from(feature);
    let mut threshold = lo[f] + (hi[f] - lo[f]) * rng.next_f64() as f32;
    if threshold <= lo[f] {
        // Keep both sides non-empty: x < threshold goes left.
        threshold = (lo[f] + hi[f]) / 2.0;
    }
    let mut split = 0;
    for i in 0..rows.len() {
        let below = data.get(rows[i] as usize).is_some_and(|x| x[f] < threshold);
        if below {
            rows.swap(i, split);
            split += 1;
        }
    }
    let (l, r) = rows.split_at_mut(split);
    let left = grow(data, l, depth + 1, height, rng, nodes);
    let right = grow(data, r, depth + 1, height, rng, nodes);
    nodes[at as usize] = Node::Split {
        feature,
        threshold,
        lo: lo[f],
        hi: hi[f],
        left,
        right,
        size,
    };
    at
}

impl Tree {
    fn path(&self, x: &Features, margin: f32, explain: Option<&mut [f64; METRIC_COUNT]>) -> f64 {
        let outside = x
            .iter()
            .zip(self.band_lo.iter().zip(&self.band_hi))
            .fold(false, |acc, (v, (lo, hi))| acc | (*v < *lo) | (*v > *hi));
        for &(f, v) in self.constants.iter().filter(|_| outside) {
            if (x[usize::from(f)] - v).abs() > margin {
                if let Some(e) = explain {
                    e[usize::from(f)] += 1.0;
                }
                return 1.0;
            }
        }
        let mut explain = explain;
        let mut at = 0usize;
        let mut depth = 0u32;
        loop {
            match self.nodes.get(at) {
                Some(&Node::Split {
                    feature,
                    threshold,
                    lo,
                    hi,
                    left,
                    right,
                    size,
                }) => {
                    depth += 1;
                    let v = x[usize::from(feature)];
                    if v > hi + margin || v < lo - margin {
                        if let Some(e) = explain {
                            e[usize::from(feature)] += 1.0 / f64::from(depth);
                        }
                        return f64::from(depth);
                    }
                    let next = if v < threshold { left } else { right };
                    if let Some(e) = explain.as_deref_mut() {
                        let child = self.nodes.get(next as usize).map_or(0, Node::size);
                        let separated = 1.0 - f64::from(child) / f64::from(size.max(1));
                        e[usize::from(feature)] += separated / f64::from(depth);
                    }
                    at = next as usize;
                }
                Some(&Node::Leaf { rest, .. }) => return f64::from(depth) + f64::from(rest),
                None => return f64::from(depth),
            }
        }
    }
}

/// The top `k` features by credit share, with the point's metric values.
pub(crate) fn top_features(
    credit: &[f64; METRIC_COUNT],
    values: &Values,
    k: usize,
) -> Vec<(Metric, f64, f64)> {
    let total: f64 = credit.iter().sum();
    let mut ranked: Vec<(Metric, f64, f64)> = Metric::ALL
        .into_iter()
        .map(|m| {
            let share = if total > 0.0 {
                credit[m.index()] / total
            } else {
                0.0
            };
            (m, share, values[m.index()])
        })
        .filter(|(_, share, _)| *share > 0.0)
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

/// Recent fleet windows to fit from. Once full, each offered window replaces
/// a random slot with probability `keep`, so the reservoir turns over about
/// once per refit period and follows the fleet.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reservoir {
    pub points: Vec<Features>,
}

impl Reservoir {
    pub(crate) fn offer(&mut self, x: Features, cap: usize, keep: f64, rng: &mut Rng) {
        if self.points.len() < cap {
            self.points.push(x);
        } else if rng.next_f64() < keep {
            let i = rng.below(self.points.len());
            if let Some(p) = self.points.get_mut(i) {
                *p = x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_points_score_high_and_inliers_do_not() {
        let mut rng = Rng::new(1);
        let data: Vec<Features> = (0..2000)
            .map(|_| {
                let mut x = [0.0f32; METRIC_COUNT];
                for v in x.iter_mut().take(6) {
                    *v = rng.next_f64() as f32 * 3.0;
                }
                x
            })
            .collect();
        let Some(forest) = Forest::fit(&data, 64, 256, 1.0, &mut rng) else {
            panic!("no forest");
        };
        let inlier: f64 = data
            .iter()
            .take(200)
            .map(|x| forest.score(x, None).score)
            .sum::<f64>()
            / 200.0;
        assert!((0.35..0.6).contains(&inlier), "{inlier}");
        let mut far = [0.0f32; METRIC_COUNT];
        far[2] = 6.0;
        let mut credit = [0.0; METRIC_COUNT];
        let s = forest.score(&far, Some(&mut credit)).score;
        assert!(s > 0.75, "{s}");
        let top = top_features(&credit, &[0.0; METRIC_COUNT], 1);
        assert_eq!(top.first().map(|t| t.0), Some(Metric::BytesIn));
        let mut batch = Vec::new();
        forest.score_batch(&[far, data[0]], &mut batch);
        assert_eq!(batch[0], s);
        assert_eq!(batch[1], forest.score(&data[0], None).score);
        // A feature constant in training, moved: isolated by the guard.
        let mut odd = data[0];
        odd[10] = 2.0;
        assert!(forest.score(&odd, None).score > 0.8);
    }

    #[test]
    fn c_matches_the_paper() {
        assert_eq!(c(1), 0.0);
        assert_eq!(c(2), 1.0);
        assert!((c(256) - 10.24).abs() < 0.01);
    }
}
