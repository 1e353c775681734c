/* The C twin of plugins/test-headers: emits each event with its value replaced by its
 * headers as text, `name=<value as hex>` (or `name=~` for a null value), joined by `;`.
 * With config `timers: true` (a keyed input) it registers an event-time timer at each
 * event's time, so that watermarks inside a batch split it into several calls. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static bool timers;
static struct {
    char *buf;
    size_t len, cap;
} text;

bool sluice_init(const sluice_config *config, sluice_error *err) {
    (void)err;
    const char *t = sluice_config_get(config, "timers");
    timers = t && strcmp(t, "true") == 0;
    return true;
}

static void put(const void *p, size_t n) {
    if (text.len + n > text.cap) {
        text.cap = (text.len + n) * 2 + 64;
        text.buf = realloc(text.buf, text.cap);
    }
    memcpy(text.buf + text.len, p, n);
    text.len += n;
}

bool sluice_process(const sluice_event *e, sluice_emitter *out, sluice_error *err) {
    sluice_headers h;
    if (!sluice_event_headers(e->row, &h, err)) return false;
    text.len = 0;
    for (size_t i = 0; i < h.count; i++) {
        if (i > 0) put(";", 1);
        put(h.items[i].name, h.items[i].name_len);
        put("=", 1);
        if (!h.items[i].has_value) put("~", 1);
        for (size_t j = 0; h.items[i].has_value && j < h.items[i].value_len; j++) {
            char hex[3];
            snprintf(hex, sizeof hex, "%02x", h.items[i].value[j]);
            put(hex, 2);
        }
    }
    sluice_headers_free(&h);
    sluice_emit(out, e->timestamp, e->key, e->key_len, (const uint8_t *)text.buf, text.len);
    if (timers) return sluice_register_timer(e->row, SLUICE_EVENT_TIME, e->timestamp, err);
    return true;
}
