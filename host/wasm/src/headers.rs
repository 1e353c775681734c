//! The `event-headers` import: a row's headers (Kafka record headers), from the
//! [`Headers`] column of the batch being processed, resolved against the running call's
//! [`Scope`](crate::state::Scope) like the state imports' rows.

use crate::bindings::sluice::operator::{event_headers, types};
use crate::operator::HostState;
use crate::state::{CallKind, state_error};
use types::{StateError, StateErrorCode};

impl event_headers::Host for HostState {
    fn headers(&mut self, row: u32) -> Result<Vec<event_headers::Header>, StateError> {
        let s = &self.scope;
        if s.kind != CallKind::Batch {
            return Err(state_error(
                StateErrorCode::NoCurrentKey,
                "headers are only available during process, where a row names an event",
            ));
        }
        if row >= s.limit {
            return Err(state_error(
                StateErrorCode::BadIndex,
                format!(
                    "row {row} is not in the batch being processed ({} rows, limit {})",
                    s.len, s.limit
                ),
            ));
        }
        let Some(headers) = &s.headers else {
            return Ok(Vec::new());
        };
        Ok(headers
            .get((s.headers_base + row) as usize)
            .map(|(name, value)| event_headers::Header {
                name: name.to_string(),
                value: value.map(<[u8]>::to_vec),
            })
            .collect())
    }
}
