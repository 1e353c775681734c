//! Per-card fraud rules over a stream of payments: a keyed process function, in Flink's
//! terms, whose state the host keeps.
//!
//! Input: keyed by card (the event key is the card id); the value is a JSON object with a
//! numeric `amount` (other fields are ignored); the event time is the payment's time.
//!
//! Rules, checked for every payment in stream order:
//!
//! - **velocity**: more than `velocity_max_payments` (default 5) payments of the card in
//!   `velocity_window_ms` (default 10 minutes): the payments whose time is in
//!   `(t - window, t]`, this one included. The recent payment times are list state,
//!   pruned on every payment.
//! - **amount**: an amount above `amount_factor` (default 5) times the card's running
//!   mean, once the card has at least `amount_min_history` (default 5) earlier payments.
//!   The count and mean are value state; the mean is updated after the check
//!   (`mean += (amount - mean) / count`).
//! - **idle reset**: a card without payments for `idle_timeout_ms` (default 1 hour) of
//!   event time forgets its history: every payment moves the card's event-time timer to
//!   `t + idle_timeout_ms` (deleting the previous one), and the timer clears the card's
//!   state when the watermark reaches it. With `emit_idle_resets` (default false) it also
//!   emits an `idle-reset` record.
//!
//! Output: one JSON alert per rule that fires, keyed by card, at the payment's time
//! (`time` in ms since the epoch):
//!
//! ```json
//! {"card":"c017","rule":"velocity","time":1700000000000,"amount":12.5,"payments":6,"window_ms":600000}
//! {"card":"c017","rule":"amount","time":1700000000000,"amount":950.25,"mean":41.5,"history":12,"factor":5}
//! {"card":"c017","rule":"idle-reset","time":1700003600000,"payments":14}
//! ```

use sluice_guest::{Config, Emitter, Error, Event, ListState, Operator, TimerContext, ValueState};
use std::fmt::Write;

struct FraudRules {
    max_payments: usize,
    window_ms: i64,
    factor: f64,
    min_history: i64,
    idle_ms: i64,
    emit_resets: bool,
    /// Times of the card's payments in the velocity window.
    recent: ListState<i64>,
    /// The card's payment count and mean amount.
    stats: ValueState<(i64, f64)>,
    /// The time of the card's idle timer.
    idle_timer: ValueState<i64>,
    /// Reused for the recent times.
    times: Vec<i64>,
    /// Reused for rendering alerts.
    line: String,
}

/// The card id, for alerts.
fn card(key: &[u8]) -> String {
    // Keys are card ids; escape what JSON needs escaped.
    let s = String::from_utf8_lossy(key);
    serde_json::Value::String(s.into_owned()).to_string()
}

impl Operator for FraudRules {
    fn init(config: &Config) -> Result<Self, Error> {
        let positive = |key: &str, v: i64| {
            if v > 0 {
                Ok(v)
            } else {
                Err(Error::invalid_config(format!(
                    "{key} must be positive, got {v}"
                )))
            }
        };
        let factor: f64 = config.parse_or("amount_factor", 5.0)?;
        if !(factor.is_finite() && factor > 0.0) {
            return Err(Error::invalid_config(format!(
                "amount_factor must be a positive number, got {factor}"
            )));
        }
        Ok(FraudRules {
            max_payments: positive(
                "velocity_max_payments",
                config.parse_or("velocity_max_payments", 5)?,
            )? as usize,
            window_ms: positive(
                "velocity_window_ms",
                config.parse_or("velocity_window_ms", 600_000)?,
            )?,
            factor,
            min_history: config.parse_or("amount_min_history", 5)?,
            idle_ms: positive(
                "idle_timeout_ms",
                config.parse_or("idle_timeout_ms", 3_600_000)?,
            )?,
            emit_resets: config.parse_or("emit_idle_resets", false)?,
            recent: ListState::declare("recent-payments")?,
            stats: ValueState::declare("amount-stats")?,
            idle_timer: ValueState::declare("idle-timer")?,
            times: Vec::new(),
            line: String::new(),
        })
    }

    fn process(&mut self, event: Event<'_>, out: &mut Emitter) -> Result<(), Error> {
        let t = event.timestamp;
        let payment: serde_json::Value = serde_json::from_slice(event.value)
            .map_err(|e| Error::invalid_input(format!("payment is not JSON: {e}")))?;
        let amount = payment
            .get("amount")
            .and_then(|a| a.as_f64())
            .ok_or_else(|| Error::invalid_input("payment has no numeric 'amount'"))?;

        // (a) velocity: payments in (t - window, t].
        let mut times = std::mem::take(&mut self.times);
        times.clear();
        times.extend(
            self.recent
                .get(&event)?
                .into_iter()
                .filter(|&p| p > t - self.window_ms),
        );
        times.push(t);
        let in_window = times.iter().filter(|&&p| p <= t).count();
        if in_window > self.max_payments {
            self.line.clear();
            write!(
                self.line,
                r#"{{"card":{},"rule":"velocity","time":{t},"amount":{amount},"payments":{in_window},"window_ms":{}}}"#,
                card(event.key),
                self.window_ms
            )
            .expect("write to a String");
            out.emit(t, event.key, self.line.as_bytes());
        }
        self.recent.set(&event, &times)?;
        self.times = times;

        // (b) amount far above the card's running mean.
        let (mut count, mut mean) = self.stats.get(&event)?.unwrap_or((0, 0.0));
        if count >= self.min_history && amount > self.factor * mean {
            self.line.clear();
            write!(
                self.line,
                r#"{{"card":{},"rule":"amount","time":{t},"amount":{amount},"mean":{mean},"history":{count},"factor":{}}}"#,
                card(event.key),
                self.factor
            )
            .expect("write to a String");
            out.emit(t, event.key, self.line.as_bytes());
        }
        count += 1;
        mean += (amount - mean) / count as f64;
        self.stats.set(&event, &(count, mean))?;

        // (c) move the card's idle timer.
        let timers = event.timers();
        if let Some(old) = self.idle_timer.get(&event)? {
            timers.delete_event_time(old)?;
        }
        let at = t.saturating_add(self.idle_ms);
        timers.register_event_time(at)?;
        self.idle_timer.set(&event, &at)?;
        Ok(())
    }

    fn on_timer(&mut self, timer: TimerContext<'_>, out: &mut Emitter) -> Result<(), Error> {
        // Only the card's current idle timer clears it (a moved timer was deleted, but
        // be safe with state restored from another version).
        if self.idle_timer.get(&timer)? != Some(timer.time) {
            return Ok(());
        }
        if self.emit_resets {
            let (count, _) = self.stats.get(&timer)?.unwrap_or((0, 0.0));
            self.line.clear();
            write!(
                self.line,
                r#"{{"card":{},"rule":"idle-reset","time":{},"payments":{count}}}"#,
                card(timer.key),
                timer.time
            )
            .expect("write to a String");
            out.emit(timer.time, timer.key, self.line.as_bytes());
        }
        self.recent.clear(&timer)?;
        self.stats.clear(&timer)?;
        self.idle_timer.clear(&timer)?;
        Ok(())
    }
}

sluice_guest::export_operator!(FraudRules);
