//! A deterministic stream of card payments for the fraud-rules tests: seeded, in event-
//! time order, with bursts (for the velocity rule), occasional large amounts (for the
//! amount rule) and cards that go quiet (for idle timers); and the fraud rules computed
//! directly over them, the reference for the `fraud-rules` plugin.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// Writes `payments` to `path` (created or truncated) as JSON lines
/// `{"time": <ms>, "card": "...", "amount": ...}` (the input of
/// `plugins/fraud-rules/fraud.yaml`). Errors: the file's I/O error.
pub fn write_jsonl(payments: &[Payment], path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for p in payments {
        writeln!(
            out,
            r#"{{"time":{},"card":"{}","amount":{}}}"#,
            p.time, p.card, p.amount
        )?;
    }
    out.flush()
}

/// The generator's settings.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// Number of payments.
    pub count: usize,
    /// Number of distinct cards (at least 1).
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

// ---- the fraud rules, computed directly (the reference for the fraud-rules plugin) ----

/// The fraud plugin's settings, shared by the plugin's config and the reference.
#[derive(Clone, Copy)]
pub struct Rules {
    /// Velocity: more than this many payments of a card …
    pub max_payments: usize,
    /// … within this many ms.
    pub window_ms: i64,
    /// Amount: above this many times the card's mean …
    pub factor: f64,
    /// … once the card has this many payments.
    pub min_history: i64,
    /// Idle reset: a card's state is cleared after this many ms without payments.
    pub idle_ms: i64,
}

impl Rules {
    /// The plugin's `config` for these rules (with idle-reset records on).
    pub fn config(&self) -> Vec<(String, String)> {
        [
            ("velocity_max_payments", self.max_payments.to_string()),
            ("velocity_window_ms", self.window_ms.to_string()),
            ("amount_factor", self.factor.to_string()),
            ("amount_min_history", self.min_history.to_string()),
            ("idle_timeout_ms", self.idle_ms.to_string()),
            ("emit_idle_resets", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// The rules the tests use.
pub const RULES: Rules = Rules {
    max_payments: 3,
    window_ms: 5 * 60_000,
    factor: 4.0,
    min_history: 4,
    idle_ms: 30 * 60_000,
};

/// An alert, with its numbers as `f64` (exact: both sides compute the same floats).
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct Alert {
    /// The card.
    pub card: String,
    /// `velocity`, `amount` or `idle-reset`.
    pub rule: String,
    /// Event time of the alert, ms.
    pub time: i64,
    /// The numbers it carries.
    pub nums: BTreeMap<String, f64>,
}

/// Parses an alert as the plugin writes it (a flat JSON object of strings without `,` and
/// numbers, with `card`, `rule` and `time`; every other field is a number) with numbers
/// read by `str::parse::<f64>`, which rounds exactly (serde_json's default parser may
/// not). Panics on any other text.
pub fn parse_alert(json: &str) -> Alert {
    let body = json
        .strip_prefix('{')
        .and_then(|j| j.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not an object: {json}"));
    let mut fields = BTreeMap::new();
    for field in body.split(',') {
        let (k, v) = field.split_once(':').unwrap_or_else(|| panic!("{json}"));
        fields.insert(k.trim_matches('"').to_string(), v.to_string());
    }
    let mut text = |k: &str| -> String {
        let v = fields
            .remove(k)
            .unwrap_or_else(|| panic!("no {k} in {json}"));
        v.trim_matches('"').to_string()
    };
    let (card, rule) = (text("card"), text("rule"));
    let time = text("time").parse().unwrap();
    Alert {
        card,
        rule,
        time,
        nums: fields
            .into_iter()
            .map(|(k, v)| {
                let n = v
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("{k}: {e} in {json}"));
                (k, n)
            })
            .collect(),
    }
}

/// An alert from its parts.
pub fn alert(card: &str, rule: &str, time: i64, nums: &[(&str, f64)]) -> Alert {
    Alert {
        card: card.to_string(),
        rule: rule.to_string(),
        time,
        nums: nums.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// The three rules, computed directly: for each payment in order, first the idle timers
/// the watermark it met (`watermarks[i]`, ms; one per payment) has passed, in
/// (time, card) order, then the payment; at the end every remaining timer. Returns the
/// alerts in the order a single subtask emits them.
pub fn reference(payments: &[Payment], watermarks: &[i64], r: &Rules) -> Vec<Alert> {
    #[derive(Default)]
    struct Card {
        recent: Vec<i64>,
        count: i64,
        mean: f64,
        timer: Option<i64>,
    }
    let mut cards: HashMap<String, Card> = HashMap::new();
    let mut timers: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut out = Vec::new();
    let fire = |w: i64,
                timers: &mut BTreeSet<(i64, String)>,
                cards: &mut HashMap<String, Card>,
                out: &mut Vec<Alert>| {
        while let Some((t, card)) = timers.first().cloned()
            && t <= w
        {
            timers.pop_first();
            let c = cards.remove(&card).unwrap();
            assert_eq!(c.timer, Some(t));
            out.push(alert(
                &card,
                "idle-reset",
                t,
                &[("payments", c.count as f64)],
            ));
        }
    };
    for (p, &w) in payments.iter().zip(watermarks) {
        fire(w, &mut timers, &mut cards, &mut out);
        let c = cards.entry(p.card.clone()).or_default();
        let t = p.time;
        c.recent.retain(|&x| x > t - r.window_ms);
        c.recent.push(t);
        if c.recent.len() > r.max_payments {
            out.push(alert(
                &p.card,
                "velocity",
                t,
                &[
                    ("amount", p.amount),
                    ("payments", c.recent.len() as f64),
                    ("window_ms", r.window_ms as f64),
                ],
            ));
        }
        if c.count >= r.min_history && p.amount > r.factor * c.mean {
            out.push(alert(
                &p.card,
                "amount",
                t,
                &[
                    ("amount", p.amount),
                    ("mean", c.mean),
                    ("history", c.count as f64),
                    ("factor", r.factor),
                ],
            ));
        }
        c.count += 1;
        c.mean += (p.amount - c.mean) / c.count as f64;
        if let Some(old) = c.timer.take() {
            timers.remove(&(old, p.card.clone()));
        }
        timers.insert((t + r.idle_ms, p.card.clone()));
        c.timer = Some(t + r.idle_ms);
    }
    fire(i64::MAX, &mut timers, &mut cards, &mut out);
    out
}

/// Bounded out-of-orderness of the payments' watermarks.
pub const OUT_OF_ORDERNESS: i64 = 5_000;

/// The watermark each payment meets (ms, one per payment), as a source's
/// bounded-out-of-orderness generator gives it: the highest earlier event time, minus
/// [`OUT_OF_ORDERNESS`], minus 1 ms; `i64::MIN` (no watermark yet) for the first.
pub fn per_event_watermarks(payments: &[Payment]) -> Vec<i64> {
    let mut max = i64::MIN;
    payments
        .iter()
        .map(|p| {
            let w = if max == i64::MIN {
                i64::MIN
            } else {
                max - OUT_OF_ORDERNESS - 1
            };
            max = max.max(p.time);
            w
        })
        .collect()
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

    #[test]
    fn reference_and_watermarks_of_a_hand_computed_case() {
        let pay = |time: i64, card: &str, amount: f64| Payment {
            time,
            card: card.to_string(),
            amount,
        };
        let payments = [
            pay(0, "a", 10.0),
            pay(60_000, "a", 10.0),
            pay(120_000, "a", 10.0),
            // The 4th in 5 minutes: velocity.
            pay(180_000, "a", 10.0),
            // 5 times the mean of 4 payments: amount.
            pay(600_000, "a", 50.0),
            pay(2_405_001, "b", 1.0),
            // Meets watermark 2,405,001 - 5,000 - 1 = a's idle timer (600,000 + 30 min).
            pay(2_405_002, "c", 1.0),
        ];
        let watermarks = per_event_watermarks(&payments);
        assert_eq!(
            watermarks,
            [
                i64::MIN,
                -5_001,
                54_999,
                114_999,
                174_999,
                594_999,
                2_400_000
            ]
        );
        let want = [
            alert(
                "a",
                "velocity",
                180_000,
                &[
                    ("amount", 10.0),
                    ("payments", 4.0),
                    ("window_ms", 300_000.0),
                ],
            ),
            alert(
                "a",
                "amount",
                600_000,
                &[
                    ("amount", 50.0),
                    ("mean", 10.0),
                    ("history", 4.0),
                    ("factor", 4.0),
                ],
            ),
            alert("a", "idle-reset", 2_400_000, &[("payments", 5.0)]),
            alert("b", "idle-reset", 4_205_001, &[("payments", 1.0)]),
            alert("c", "idle-reset", 4_205_002, &[("payments", 1.0)]),
        ];
        assert_eq!(reference(&payments, &watermarks, &RULES), want);
        // Alerts read back from the plugin's JSON.
        assert_eq!(
            parse_alert(
                r#"{"card":"a","rule":"amount","time":600000,"amount":50,"mean":10,"history":4,"factor":4}"#
            ),
            want[1]
        );
    }
}
