/* Emits every event unchanged: the C twin of plugins/identity (the SDK benchmark's). */

#include "sluice.h"

bool sluice_init(const sluice_config *config, sluice_error *err) {
    (void)config, (void)err;
    return true;
}

bool sluice_process(const sluice_event *e, sluice_emitter *out, sluice_error *err) {
    (void)err;
    sluice_emit(out, e->timestamp, e->key, e->key_len, e->value, e->value_len);
    return true;
}
