//! The one backoff every retry loop of the bus uses (backon's exponential policy, no jitter):
//! each loop keeps its own shutdown handling and asks this for the next pause.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Pauses from `first`, doubling up to `max`, for ever.
pub fn backoff(first: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max)
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_most() {
        let ms = Duration::from_millis;
        let pauses: Vec<u128> = backoff(ms(100), ms(1000))
            .take(6)
            .map(|p| p.as_millis())
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
    }
}
