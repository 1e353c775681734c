/* Flags delayed flights: the C twin of plugins/flight-delays (same events out).
 *
 * Input value: packed `date: i64, delay: i64, distance: i64, origin: str, destination: str`.
 * Output: one event per input, same timestamp, key = the origin airport, value = packed
 * `delay: i32, delayed: i32` (1 if `delay` is above `delayed_threshold_minutes`, default 15). */

#include <stdint.h>

#include "sluice.h"

static int64_t threshold;
static sluice_packed_writer value;

bool sluice_init(const sluice_config *config, sluice_error *err) {
    return sluice_config_int(config, "delayed_threshold_minutes", 15, &threshold, err);
}

bool sluice_process(const sluice_event *e, sluice_emitter *out, sluice_error *err) {
    sluice_packed_reader r = sluice_packed_reader_of(e->value, e->value_len);
    int64_t date, delay, distance;
    const uint8_t *origin;
    size_t origin_len;
    if (!sluice_packed_i64(&r, &date, err) || !sluice_packed_i64(&r, &delay, err) ||
        !sluice_packed_i64(&r, &distance, err) || !sluice_packed_bytes(&r, &origin, &origin_len, err))
        return false;
    if (delay < INT32_MIN || delay > INT32_MAX)
        return sluice_fail(err, SLUICE_INVALID_INPUT, "delay %lld does not fit in an i32", (long long)delay);
    sluice_packed_writer_clear(&value);
    sluice_packed_put_i32(&value, (int32_t)delay);
    sluice_packed_put_i32(&value, delay > threshold ? 1 : 0);
    sluice_emit(out, e->timestamp, origin, origin_len, value.buf, value.len);
    return true;
}
