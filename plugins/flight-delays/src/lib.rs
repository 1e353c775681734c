//! Flags delayed flights.
//!
//! Input value: a packed record of the flights columns, in this order:
//! `date: i64` (ms since the epoch, UTC), `delay: i64` (minutes), `distance: i64` (miles),
//! `origin: str`, `destination: str`.
//!
//! Output: one event per input, same timestamp, key = the origin airport, value = packed
//! `delay: i32, delayed: i32`, where `delayed` is 1 if `delay` is above the threshold
//! (config `delayed_threshold_minutes`, default 15), else 0.

mod operator;

sluice_guest::export_operator!(operator::FlightDelays);
