use crate::format::{FieldAccessor, FieldError, ValueFormat, write_json_f64, write_json_str};
use sluice_packed::Number;
use std::fmt::Write as _;

/// A built-in aggregate function over a window's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFn {
    /// Number of events.
    Count,
    /// Sum of a numeric field (integers exactly, in 128 bits; floats as `f64`).
    Sum,
    /// Smallest value of a numeric field.
    Min,
    /// Largest value of a numeric field.
    Max,
    /// Arithmetic mean of a numeric field, as `f64`.
    Avg,
}

impl AggregateFn {
    /// Parses `count`, `sum`, `min`, `max`, `avg`.
    pub fn parse(name: &str) -> Option<AggregateFn> {
        Some(match name {
            "count" => AggregateFn::Count,
            "sum" => AggregateFn::Sum,
            "min" => AggregateFn::Min,
            "max" => AggregateFn::Max,
            "avg" => AggregateFn::Avg,
            _ => return None,
        })
    }
}

/// One output column of a window result: `name = fn(field)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    /// Output name in the result row.
    pub name: String,
    /// The function.
    pub function: AggregateFn,
    /// Input field (not for `count`).
    pub field: Option<String>,
}

/// The compiled list of aggregates of a window vertex, with field accessors resolved
/// against the input's value format.
#[derive(Debug, Clone)]
pub struct Aggregates {
    specs: Vec<AggregateSpec>,
    /// Distinct fields read, in order; each aggregate points into it.
    fields: Vec<FieldAccessor>,
    field_of: Vec<Option<usize>>,
}

/// Running state of one window: the event count and, per distinct field, sum, min, max.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    /// Events added.
    pub count: u64,
    fields: Box<[FieldAcc]>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct FieldAcc {
    int_sum: i128,
    float_sum: f64,
    any_float: bool,
    min: Option<Number>,
    max: Option<Number>,
}

impl FieldAcc {
    const EMPTY: FieldAcc = FieldAcc {
        int_sum: 0,
        float_sum: 0.0,
        any_float: false,
        min: None,
        max: None,
    };

    #[inline]
    fn add(&mut self, n: Number) {
        match n {
            Number::Int(v) => self.int_sum += v as i128,
            Number::Float(v) => {
                self.float_sum += v;
                self.any_float = true;
            }
        }
        if self.min.is_none_or(|m| less(n, m)) {
            self.min = Some(n);
        }
        if self.max.is_none_or(|m| less(m, n)) {
            self.max = Some(n);
        }
    }

    fn merge(&mut self, o: &FieldAcc) {
        self.int_sum += o.int_sum;
        self.float_sum += o.float_sum;
        self.any_float |= o.any_float;
        for n in [o.min, o.max].into_iter().flatten() {
            if self.min.is_none_or(|m| less(n, m)) {
                self.min = Some(n);
            }
            if self.max.is_none_or(|m| less(m, n)) {
                self.max = Some(n);
            }
        }
    }

    fn sum_f64(&self) -> f64 {
        self.int_sum as f64 + self.float_sum
    }
}

impl Accumulator {
    /// Appends the accumulator's bytes (the window state format of checkpoints):
    /// `count u64 | per field: int_sum i128 | float_sum f64 | any_float u8 | min | max`,
    /// little-endian, each `min`/`max` a tag byte (0 none, 1 int, 2 float) and 8 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_le_bytes());
        for f in self.fields.iter() {
            out.extend_from_slice(&f.int_sum.to_le_bytes());
            out.extend_from_slice(&f.float_sum.to_le_bytes());
            out.push(f.any_float as u8);
            for n in [f.min, f.max] {
                match n {
                    None => out.extend_from_slice(&[0; 9]),
                    Some(Number::Int(v)) => {
                        out.push(1);
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                    Some(Number::Float(v)) => {
                        out.push(2);
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    }

    /// Reads an accumulator written by [`Accumulator::encode`] for `fields` fields;
    /// `None` when the bytes do not hold one.
    pub fn decode(bytes: &[u8], fields: usize) -> Option<Accumulator> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = bytes.get(at..at + n)?;
            at += n;
            Some(s)
        };
        let count = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let mut out = Vec::with_capacity(fields);
        for _ in 0..fields {
            let int_sum = i128::from_le_bytes(take(16)?.try_into().ok()?);
            let float_sum = f64::from_le_bytes(take(8)?.try_into().ok()?);
            let any_float = take(1)?[0] != 0;
            let mut mm = [None, None];
            for slot in &mut mm {
                let tag = take(1)?[0];
                let b: [u8; 8] = take(8)?.try_into().ok()?;
                *slot = match tag {
                    0 => None,
                    1 => Some(Number::Int(i64::from_le_bytes(b))),
                    2 => Some(Number::Float(f64::from_le_bytes(b))),
                    _ => return None,
                };
            }
            out.push(FieldAcc {
                int_sum,
                float_sum,
                any_float,
                min: mm[0],
                max: mm[1],
            });
        }
        (at == bytes.len()).then(|| Accumulator {
            count,
            fields: out.into_boxed_slice(),
        })
    }
}

#[inline]
fn less(a: Number, b: Number) -> bool {
    match (a, b) {
        (Number::Int(a), Number::Int(b)) => a < b,
        _ => a.as_f64() < b.as_f64(),
    }
}

fn write_number(out: &mut String, n: Option<Number>) {
    match n {
        None => out.push_str("null"),
        Some(Number::Int(v)) => {
            let _ = write!(out, "{v}");
        }
        Some(Number::Float(v)) => write_json_f64(out, v),
    }
}

impl Aggregates {
    /// Resolves `specs` against the input value format.
    ///
    /// Errors (naming the aggregate): a field missing from the format or not numeric, a
    /// `count` with a field, another function without one, duplicate output names.
    pub fn new(specs: Vec<AggregateSpec>, format: &ValueFormat) -> Result<Aggregates, FieldError> {
        let mut names: Vec<&str> = Vec::new();
        let mut field_names: Vec<String> = Vec::new();
        let mut fields = Vec::new();
        let mut field_of = Vec::new();
        for s in &specs {
            if names.contains(&s.name.as_str()) {
                return Err(FieldError(format!(
                    "aggregate name '{}' is used twice",
                    s.name
                )));
            }
            names.push(&s.name);
            match (&s.function, &s.field) {
                (AggregateFn::Count, None) => field_of.push(None),
                (AggregateFn::Count, Some(_)) => {
                    return Err(FieldError(format!(
                        "aggregate '{}': count takes no field",
                        s.name
                    )));
                }
                (_, None) => {
                    return Err(FieldError(format!("aggregate '{}': needs a field", s.name)));
                }
                (_, Some(f)) => {
                    let idx =
                        match field_names.iter().position(|n| n == f) {
                            Some(i) => i,
                            None => {
                                fields.push(FieldAccessor::new(format, f).map_err(|e| {
                                    FieldError(format!("aggregate '{}': {e}", s.name))
                                })?);
                                field_names.push(f.clone());
                                fields.len() - 1
                            }
                        };
                    field_of.push(Some(idx));
                }
            }
        }
        Ok(Aggregates {
            specs,
            fields,
            field_of,
        })
    }

    /// A fresh accumulator.
    pub fn create(&self) -> Accumulator {
        Accumulator {
            count: 0,
            fields: vec![FieldAcc::EMPTY; self.fields.len()].into_boxed_slice(),
        }
    }

    /// Reads an accumulator of these aggregates written by [`Accumulator::encode`].
    pub fn decode_accumulator(&self, bytes: &[u8]) -> Option<Accumulator> {
        Accumulator::decode(bytes, self.fields.len())
    }

    /// Adds one event's value. Errors when a field cannot be read from the value.
    #[inline]
    pub fn add(&self, acc: &mut Accumulator, value: &[u8]) -> Result<(), FieldError> {
        for (f, a) in self.fields.iter().zip(acc.fields.iter_mut()) {
            a.add(f.read(value)?);
        }
        acc.count += 1;
        Ok(())
    }

    /// Merges `other` into `acc` (session windows that merge).
    pub fn merge(&self, acc: &mut Accumulator, other: &Accumulator) {
        acc.count += other.count;
        for (a, o) in acc.fields.iter_mut().zip(other.fields.iter()) {
            a.merge(o);
        }
    }

    /// Appends the aggregates as JSON members `"name":value` (comma-separated, no braces).
    pub fn write_json_members(&self, acc: &Accumulator, out: &mut String) {
        for (i, (s, f)) in self.specs.iter().zip(&self.field_of).enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_str(out, &s.name);
            out.push(':');
            let fa = f.map(|f| &acc.fields[f]);
            match (s.function, fa) {
                (AggregateFn::Count, _) => {
                    let _ = write!(out, "{}", acc.count);
                }
                (AggregateFn::Sum, Some(fa)) => {
                    if fa.any_float {
                        write_json_f64(out, fa.sum_f64());
                    } else {
                        let _ = write!(out, "{}", fa.int_sum);
                    }
                }
                (AggregateFn::Avg, Some(fa)) => {
                    if acc.count == 0 {
                        out.push_str("null");
                    } else {
                        write_json_f64(out, fa.sum_f64() / acc.count as f64);
                    }
                }
                (AggregateFn::Min, Some(fa)) => write_number(out, fa.min),
                (AggregateFn::Max, Some(fa)) => write_number(out, fa.max),
                (_, None) => out.push_str("null"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{PackedField, PackedSchema};
    use sluice_packed::{FieldType, Writer};

    fn spec(name: &str, f: AggregateFn, field: Option<&str>) -> AggregateSpec {
        AggregateSpec {
            name: name.into(),
            function: f,
            field: field.map(String::from),
        }
    }

    #[test]
    fn count_sum_min_max_avg_over_packed_values() {
        let format = ValueFormat::Packed(PackedSchema {
            fields: vec![
                PackedField {
                    name: "delay".into(),
                    ty: FieldType::I32,
                },
                PackedField {
                    name: "delayed".into(),
                    ty: FieldType::I32,
                },
            ],
        });
        let aggs = Aggregates::new(
            vec![
                spec("n", AggregateFn::Count, None),
                spec("delayed", AggregateFn::Sum, Some("delayed")),
                spec("sum", AggregateFn::Sum, Some("delay")),
                spec("avg", AggregateFn::Avg, Some("delay")),
                spec("min", AggregateFn::Min, Some("delay")),
                spec("max", AggregateFn::Max, Some("delay")),
            ],
            &format,
        )
        .unwrap();
        let mut a = aggs.create();
        let mut b = aggs.create();
        for (i, d) in [-5, 20, 3, 40].into_iter().enumerate() {
            let mut v = Vec::new();
            Writer::new(&mut v).i32(d).i32((d > 15) as i32);
            aggs.add(if i % 2 == 0 { &mut a } else { &mut b }, &v)
                .unwrap();
        }
        aggs.merge(&mut a, &b);
        let mut s = String::new();
        aggs.write_json_members(&a, &mut s);
        assert_eq!(
            s,
            r#""n":4,"delayed":2,"sum":58,"avg":14.5,"min":-5,"max":40"#
        );
        assert!(aggs.add(&mut a, &[1, 2]).is_err());
    }

    #[test]
    fn spec_errors_name_the_aggregate() {
        let f = ValueFormat::Json;
        assert!(
            Aggregates::new(vec![spec("x", AggregateFn::Count, Some("a"))], &f)
                .unwrap_err()
                .0
                .contains("'x'")
        );
        assert!(
            Aggregates::new(vec![spec("y", AggregateFn::Sum, None)], &f)
                .unwrap_err()
                .0
                .contains("'y'")
        );
        let dup = vec![
            spec("z", AggregateFn::Count, None),
            spec("z", AggregateFn::Count, None),
        ];
        assert!(Aggregates::new(dup, &f).unwrap_err().0.contains("twice"));
        let e = Aggregates::new(
            vec![spec("w", AggregateFn::Max, Some("a"))],
            &ValueFormat::Text,
        )
        .unwrap_err();
        assert!(e.0.contains("'w'") && e.0.contains("'a'"), "{e}");
    }
}
