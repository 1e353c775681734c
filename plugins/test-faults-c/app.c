/* Test operator: fails on purpose, to check that C errors reach the host typed.
 *
 * Value `invalid`: an `invalid-input` error; `state`: keyed state declared by a
 * non-keyed operator (a `state` error); `short`: a packed read past the end of the value
 * (the SDK's `invalid-input` error); `trap`: a trap (the host reports a fault); anything
 * else is emitted as it is, on the main output and on side output `copies`. */

#include <string.h>

#include "sluice.h"

static bool is(const sluice_event *e, const char *s) {
    return e->value_len == strlen(s) && memcmp(e->value, s, e->value_len) == 0;
}

bool sluice_init(const sluice_config *config, sluice_error *err) {
    (void)config, (void)err;
    return true;
}

bool sluice_process(const sluice_event *e, sluice_emitter *out, sluice_error *err) {
    if (is(e, "invalid")) return sluice_fail(err, SLUICE_INVALID_INPUT, "the value is '%s'", "invalid");
    if (is(e, "state")) {
        sluice_state s;
        return sluice_value_state("count", 0, &s, err);
    }
    if (is(e, "short")) {
        sluice_packed_reader r = sluice_packed_reader_of(e->value, e->value_len);
        int64_t v;
        return sluice_packed_i64(&r, &v, err);
    }
    if (is(e, "trap")) __builtin_trap();
    sluice_emit(out, e->timestamp, e->key, e->key_len, e->value, e->value_len);
    sluice_emit_side(out, "copies", e->timestamp, e->key, e->key_len, e->value, e->value_len);
    return true;
}
