/// Combines the watermarks of several inputs into one: the minimum over the inputs that
/// are active; an idle input does not hold the watermark back until it sends data again,
/// and when no input is active but some are idle, the highest watermark any input
/// reached (Flink's `StatusWatermarkValve`). The output never goes backwards.
#[derive(Debug, Clone)]
pub struct WatermarkValve {
    inputs: Vec<InputState>,
    output: i64,
}

#[derive(Debug, Clone, Copy)]
struct InputState {
    watermark: i64,
    idle: bool,
    ended: bool,
}

impl WatermarkValve {
    /// A valve over `inputs` inputs, all active, with no watermark yet.
    pub fn new(inputs: usize) -> Self {
        WatermarkValve {
            inputs: vec![
                InputState {
                    watermark: i64::MIN,
                    idle: false,
                    ended: false,
                };
                inputs
            ],
            output: i64::MIN,
        }
    }

    /// The combined watermark so far.
    pub fn current(&self) -> i64 {
        self.output
    }

    /// Input `input` reached `watermark` (it is active again if it was idle). Returns the
    /// new combined watermark if it advanced.
    pub fn input_watermark(&mut self, input: usize, watermark: i64) -> Option<i64> {
        let s = &mut self.inputs[input];
        s.idle = false;
        if watermark > s.watermark {
            s.watermark = watermark;
        }
        self.recompute()
    }

    /// Input `input` became idle (`true`) or active (`false`). Returns the new combined
    /// watermark if it advanced.
    pub fn input_idle(&mut self, input: usize, idle: bool) -> Option<i64> {
        self.inputs[input].idle = idle;
        self.recompute()
    }

    /// Input `input` ended: it no longer holds the watermark back.
    pub fn input_ended(&mut self, input: usize) -> Option<i64> {
        self.inputs[input].ended = true;
        self.recompute()
    }

    fn recompute(&mut self) -> Option<i64> {
        let active = self.inputs.iter().filter(|s| !s.idle && !s.ended);
        let combined = match active.map(|s| s.watermark).min() {
            Some(min) => min,
            // No active input, and some idle: as Flink's valve, move on to the highest
            // watermark any input reached, so that idle inputs do not stall event time.
            None if self.inputs.iter().any(|s| s.idle) => {
                self.inputs.iter().map(|s| s.watermark).max()?
            }
            None => return None,
        };
        if combined > self.output {
            self.output = combined;
            Some(combined)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_two_inputs() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.input_watermark(0, 10), None); // input 1 has nothing yet
        assert_eq!(v.input_watermark(1, 5), Some(5));
        assert_eq!(v.input_watermark(1, 20), Some(10));
        assert_eq!(v.input_watermark(0, 15), Some(15));
        assert_eq!(v.input_watermark(0, 12), None); // an input going back is ignored
        assert_eq!(v.current(), 15);
        assert_eq!(v.input_watermark(0, 30), Some(20));
    }

    #[test]
    fn idle_input_stops_holding_back_and_resumes() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, 100);
        v.input_watermark(1, 10);
        assert_eq!(v.current(), 10);
        assert_eq!(v.input_idle(1, true), Some(100));
        assert_eq!(v.input_watermark(0, 150), Some(150));
        // Input 1 returns with an old watermark: it is active again but the output does
        // not go back; it holds the output until it catches up.
        assert_eq!(v.input_watermark(1, 120), None);
        assert_eq!(v.input_watermark(0, 200), None);
        assert_eq!(v.input_watermark(1, 180), Some(180));
        // All idle: the highest watermark any input reached (Flink's valve).
        assert_eq!(v.input_idle(0, true), None); // input 1 (180) is still active
        assert_eq!(v.input_idle(1, true), Some(200));
        assert_eq!(v.current(), 200);
    }

    #[test]
    fn ended_inputs_do_not_hold_back() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, 50);
        v.input_watermark(1, 40);
        assert_eq!(v.input_ended(1), Some(50));
        assert_eq!(v.input_watermark(0, i64::MAX), Some(i64::MAX));
    }
}
