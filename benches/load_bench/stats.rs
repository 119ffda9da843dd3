//! Rates, percentiles, spreads and CPU time per request.

use std::time::Duration;

use crate::client::Tally;

impl Tally {
    pub fn per_second(&self, measure: Duration) -> f64 {
        self.measured as f64 / measure.as_secs_f64()
    }

    pub fn percentile(&mut self, fraction: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        self.latencies_us.sort_unstable();
        let rank = ((fraction * self.latencies_us.len() as f64).ceil() as usize).max(1) - 1;
        Duration::from_micros(u64::from(self.latencies_us[rank]))
    }
}

/// `cpu` spread over the requests of `tallies` (warm-up included, as is the CPU time).
pub fn micros_per_request(cpu: Duration, tallies: &[Tally]) -> f64 {
    let requests: u64 = tallies.iter().map(|tally| tally.sent).sum();
    cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
}

/// The smallest, middle and largest of `values` (zeros when empty).
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(&low), Some(&high)) => (low, sorted[sorted.len() / 2], high),
        _ => (0.0, 0.0, 0.0),
    }
}
