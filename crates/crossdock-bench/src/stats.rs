//! Medians and spread: the machine is shared and noisy, so every figure is a median over repeats with
//! its range and quartiles, never a single sample or a mean that one outlier can move.

use serde::{Deserialize, Serialize};

/// A summary of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// First and third quartile (linear interpolation between order statistics).
    pub p25: f64,
    pub p75: f64,
}

impl Summary {
    /// `median [min–max]` with the given number of decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} [{:.d$}–{:.d$}]",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// The `q` quantile (0..=1) of sorted values, interpolating linearly.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// Summarises the finite values; `None` if there are none.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        median: quantile(&v, 0.5),
        min: v[0],
        max: v[v.len() - 1],
        p25: quantile(&v, 0.25),
        p75: quantile(&v, 0.75),
    })
}

/// Ratios of paired samples (same round), skipping pairs with a missing or zero denominator.
pub fn paired_ratios(num: &[Option<f64>], den: &[Option<f64>]) -> Vec<f64> {
    num.iter()
        .zip(den)
        .filter_map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if *b != 0.0 => Some(a / b),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quartiles_of_odd_and_even_counts() {
        let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 3.0, 1.0, 5.0));
        assert_eq!((s.p25, s.p75), (2.0, 4.0));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.p25, 1.75);
    }

    #[test]
    fn non_finite_values_are_ignored_and_empty_is_none() {
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[f64::NAN]).is_none());
        assert_eq!(summarize(&[f64::NAN, 2.0]).unwrap().median, 2.0);
    }

    #[test]
    fn paired_ratios_skip_missing_pairs() {
        let r = paired_ratios(
            &[Some(2.0), None, Some(3.0), Some(1.0)],
            &[Some(1.0), Some(1.0), None, Some(0.0)],
        );
        assert_eq!(r, vec![2.0]);
    }

    #[test]
    fn show_formats_median_and_range() {
        let s = summarize(&[1.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.show(1), "2.0 [1.0–4.0]");
    }
}
