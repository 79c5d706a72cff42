//! Medians and percentiles of timings.

use std::time::Duration;

pub struct Sample {
    sorted: Vec<Duration>,
}

impl Sample {
    pub fn new(mut v: Vec<Duration>) -> Sample {
        assert!(!v.is_empty(), "no measurements");
        v.sort();
        Sample { sorted: v }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Nearest-rank percentile, `p` in 0..=1.
    pub fn percentile(&self, p: f64) -> Duration {
        let i = ((self.sorted.len() as f64) * p).ceil() as usize;
        self.sorted[i.clamp(1, self.sorted.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.percentile(0.5)
    }
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
