//! A deterministic stream of card payments for the fraud-rules tests: seeded, in event-
//! time order, with bursts (for the velocity rule), occasional large amounts (for the
//! amount rule) and cards that go quiet (for idle timers).

/// One payment.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// Event time, ms since the epoch.
    pub time: i64,
    /// The card id (the event key).
    pub card: String,
    /// The amount, with at most two decimals.
    pub amount: f64,
}

impl Payment {
    /// The event value: `{"card": ..., "amount": ...}`.
    pub fn value(&self) -> String {
        format!(r#"{{"card":"{}","amount":{}}}"#, self.card, self.amount)
    }
}

/// The generator's settings.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// Number of payments.
    pub count: usize,
    /// Number of distinct cards.
    pub cards: usize,
    /// Time of the first payment, ms since the epoch.
    pub start_ms: i64,
    /// Mean time between two payments (of any cards), ms.
    pub mean_gap_ms: i64,
    /// The seed: the same seed gives the same payments.
    pub seed: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            count: 5_000,
            cards: 60,
            start_ms: 1_700_000_000_000,
            mean_gap_ms: 20_000,
            seed: 7,
        }
    }
}

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Generates payments in non-decreasing time order.
///
/// Cards are picked with a skew (low-numbered cards pay more often, so high-numbered ones
/// go quiet for long stretches); each card has a typical amount, and pays 0.5–1.5 times
/// it, except for 2 % of payments at 8–20 times it. About 1 % of payments start a burst:
/// the card pays 4–10 more times, 5–60 s apart, interleaved with other traffic.
pub fn generate(cfg: &PaymentsConfig) -> Vec<Payment> {
    let mut rng = Rng(cfg.seed);
    let typical: Vec<f64> = (0..cfg.cards)
        .map(|_| 5.0 + rng.below(19_500) as f64 / 100.0)
        .collect();
    let mut time = cfg.start_ms;
    // (card, payments left, next time) of the running burst.
    let mut burst: Option<(usize, u32, i64)> = None;
    let mut out = Vec::with_capacity(cfg.count);
    while out.len() < cfg.count {
        let gap = rng.below(2 * cfg.mean_gap_ms.max(1) as u64) as i64;
        let card = match burst {
            Some((card, left, at)) if at <= time + gap => {
                time = time.max(at);
                burst =
                    (left > 1).then(|| (card, left - 1, time + 5_000 + rng.below(55_000) as i64));
                card
            }
            _ => {
                time += gap;
                // Skewed: the square of a uniform number favours low cards.
                let u = rng.unit();
                let card = ((u * u) * cfg.cards as f64) as usize;
                if burst.is_none() && rng.below(100) == 0 {
                    let n = 4 + rng.below(7) as u32;
                    burst = Some((card, n, time + 5_000 + rng.below(55_000) as i64));
                }
                card.min(cfg.cards - 1)
            }
        };
        let factor = if rng.below(50) == 0 {
            8.0 + rng.unit() * 12.0
        } else {
            0.5 + rng.unit()
        };
        let cents = (typical[card] * factor * 100.0).round();
        out.push(Payment {
            time,
            card: format!("c{card:03}"),
            amount: cents / 100.0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_ordered_and_varied() {
        let cfg = PaymentsConfig::default();
        let a = generate(&cfg);
        assert_eq!(a, generate(&cfg));
        assert_eq!(a.len(), cfg.count);
        assert!(a.windows(2).all(|w| w[0].time <= w[1].time));
        let cards: std::collections::BTreeSet<_> = a.iter().map(|p| &p.card).collect();
        assert!(cards.len() > cfg.cards / 2, "{}", cards.len());
        let other = generate(&PaymentsConfig { seed: 8, ..cfg });
        assert_ne!(a, other);
        // Values are JSON objects with the amount written to round-trip exactly.
        for p in &a[..100] {
            let v: serde_json::Value = serde_json::from_str(&p.value()).unwrap();
            assert_eq!(v["card"], p.card.as_str());
            let text = p.value();
            let amount = text
                .split("\"amount\":")
                .nth(1)
                .unwrap()
                .trim_end_matches('}');
            assert_eq!(amount.parse::<f64>().unwrap(), p.amount);
        }
    }
}
