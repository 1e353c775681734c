/* Sluice guest SDK for C: the world's exports over the functions of sluice.h, and the
 * imports (state, timers, headers, log) in C types. The bindings `operator_world.h` /
 * `operator_world.c` are generated from the WIT by wit-bindgen's C generator (`sluice
 * build` does it). Memory: the input batch is the SDK's to free (it is, after each call);
 * output lists are malloc'd here and freed by the bindings' post-return functions. */

#include "sluice.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator_world.h"

/* ---- Small helpers -------------------------------------------------------------- */

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort(); /* out of linear memory: the host reports the trap */
    return q;
}

static char *vformat(const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) n = 0;
    char *s = xrealloc(NULL, (size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

bool sluice_fail(sluice_error *err, sluice_error_code code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    free(err->message);
    err->code = code;
    err->message = vformat(fmt, ap);
    va_end(ap);
    return false;
}

static const char *STATE_CODES[] = {"not-keyed",       "no-current-key", "bad-index", "bad-handle",
                                    "bad-declaration", "bad-argument",   "backend"};

/* A refused import call becomes a `state` error "<code>: <message>", as in the other
 * SDKs; the host's error is freed. */
static bool state_fail(sluice_operator_types_state_error_t *e, sluice_error *err) {
    const char *code = e->code < 7 ? STATE_CODES[e->code] : "unknown";
    sluice_fail(err, SLUICE_STATE, "%s: %.*s", code, (int)e->message.len, (const char *)e->message.ptr);
    sluice_operator_types_state_error_free(e);
    return false;
}

static operator_world_list_u8_t borrow(const uint8_t *p, size_t len) {
    operator_world_list_u8_t l = {(uint8_t *)p, len};
    return l;
}

/* ---- Config --------------------------------------------------------------------- */

struct sluice_config {
    char **keys;
    char **values;
    size_t count;
};

static char *cstr(const operator_world_string_t *s) {
    char *c = xrealloc(NULL, s->len + 1);
    memcpy(c, s->ptr, s->len);
    c[s->len] = 0;
    return c;
}

const char *sluice_config_get(const sluice_config *config, const char *key) {
    for (size_t i = 0; i < config->count; i++)
        if (strcmp(config->keys[i], key) == 0) return config->values[i];
    return NULL;
}

bool sluice_config_int(const sluice_config *config, const char *key, int64_t fallback,
                       int64_t *out, sluice_error *err) {
    const char *v = sluice_config_get(config, key);
    if (!v) {
        *out = fallback;
        return true;
    }
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    while (end && *end == ' ') end++;
    if (end == v || !end || *end != 0)
        return sluice_fail(err, SLUICE_INVALID_CONFIG, "%s: '%s' is not an integer", key, v);
    *out = n;
    return true;
}

/* ---- Output columns ------------------------------------------------------------- */

typedef struct {
    int64_t *timestamps;
    uint32_t *origins;
    uint32_t *key_offsets;
    uint32_t *value_offsets;
    uint8_t *key_data;
    uint8_t *value_data;
    size_t n, cap, key_len, key_cap, value_len, value_cap;
} columns;

static void columns_push(columns *c, uint32_t origin, int64_t ts, const uint8_t *k, size_t klen,
                         const uint8_t *v, size_t vlen) {
    if (c->n + 1 >= c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->timestamps = xrealloc(c->timestamps, c->cap * sizeof(int64_t));
        c->origins = xrealloc(c->origins, c->cap * sizeof(uint32_t));
        c->key_offsets = xrealloc(c->key_offsets, (c->cap + 1) * sizeof(uint32_t));
        c->value_offsets = xrealloc(c->value_offsets, (c->cap + 1) * sizeof(uint32_t));
        if (c->n == 0) c->key_offsets[0] = c->value_offsets[0] = 0;
    }
    if (c->key_len + klen > c->key_cap) {
        c->key_cap = (c->key_len + klen) * 2 + 64;
        c->key_data = xrealloc(c->key_data, c->key_cap);
    }
    if (c->value_len + vlen > c->value_cap) {
        c->value_cap = (c->value_len + vlen) * 2 + 256;
        c->value_data = xrealloc(c->value_data, c->value_cap);
    }
    if (klen) memcpy(c->key_data + c->key_len, k, klen);
    if (vlen) memcpy(c->value_data + c->value_len, v, vlen);
    c->key_len += klen;
    c->value_len += vlen;
    c->timestamps[c->n] = ts;
    c->origins[c->n] = origin;
    c->n++;
    c->key_offsets[c->n] = (uint32_t)c->key_len;
    c->value_offsets[c->n] = (uint32_t)c->value_len;
}

/* Moves the columns into a WIT output batch (the bindings free it after the call). */
static sluice_operator_types_output_batch_t columns_take(columns *c) {
    sluice_operator_types_output_batch_t b;
    if (c->n == 0) {
        c->key_offsets = xrealloc(c->key_offsets, sizeof(uint32_t));
        c->value_offsets = xrealloc(c->value_offsets, sizeof(uint32_t));
        c->key_offsets[0] = c->value_offsets[0] = 0;
    }
    b.events.timestamps = (operator_world_list_s64_t){c->timestamps, c->n};
    b.events.key_offsets = (operator_world_list_u32_t){c->key_offsets, c->n + 1};
    b.events.key_data = (operator_world_list_u8_t){c->key_data, c->key_len};
    b.events.value_offsets = (operator_world_list_u32_t){c->value_offsets, c->n + 1};
    b.events.value_data = (operator_world_list_u8_t){c->value_data, c->value_len};
    b.origins = (operator_world_list_u32_t){c->origins, c->n};
    memset(c, 0, sizeof(*c));
    return b;
}

static void columns_free(columns *c) {
    free(c->timestamps);
    free(c->origins);
    free(c->key_offsets);
    free(c->value_offsets);
    free(c->key_data);
    free(c->value_data);
    memset(c, 0, sizeof(*c));
}

typedef struct {
    char *name;
    columns cols;
} side_output;

struct sluice_emitter {
    columns main;
    side_output *sides;
    size_t side_count;
    uint32_t origin;
};

void sluice_emit(sluice_emitter *out, int64_t timestamp, const uint8_t *key, size_t key_len,
                 const uint8_t *value, size_t value_len) {
    columns_push(&out->main, out->origin, timestamp, key, key_len, value, value_len);
}

void sluice_emit_side(sluice_emitter *out, const char *output, int64_t timestamp,
                      const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len) {
    size_t i = 0;
    while (i < out->side_count && strcmp(out->sides[i].name, output) != 0) i++;
    if (i == out->side_count) {
        out->sides = xrealloc(out->sides, (out->side_count + 1) * sizeof(side_output));
        out->sides[i].name = strdup(output);
        memset(&out->sides[i].cols, 0, sizeof(columns));
        out->side_count++;
    }
    columns_push(&out->sides[i].cols, out->origin, timestamp, key, key_len, value, value_len);
}

static void emitter_take(sluice_emitter *out, sluice_operator_types_process_output_t *ret) {
    ret->main = columns_take(&out->main);
    ret->side.len = out->side_count;
    ret->side.ptr = out->side_count
                        ? xrealloc(NULL, out->side_count * sizeof(sluice_operator_types_side_output_t))
                        : NULL;
    for (size_t i = 0; i < out->side_count; i++) {
        operator_world_string_t name = {(uint8_t *)out->sides[i].name, strlen(out->sides[i].name)};
        ret->side.ptr[i].name = name; /* freed by the bindings */
        ret->side.ptr[i].batch = columns_take(&out->sides[i].cols);
    }
    free(out->sides);
    out->sides = NULL;
    out->side_count = 0;
}

static void emitter_free(sluice_emitter *out) {
    columns_free(&out->main);
    for (size_t i = 0; i < out->side_count; i++) {
        free(out->sides[i].name);
        columns_free(&out->sides[i].cols);
    }
    free(out->sides);
    memset(out, 0, sizeof(*out));
}

/* ---- The exports ---------------------------------------------------------------- */

/* Rows (or timers) the running call may handle; lowered by timer calls (see the
 * package docs of wit/operator.wit). */
static uint32_t limit;

static void to_wit_error(sluice_error *e, exports_sluice_operator_operator_operator_error_t *err) {
    err->code = (sluice_operator_types_error_code_t)e->code;
    const char *msg = e->message ? e->message : "the operator failed without a message";
    operator_world_string_dup(&err->message, msg);
    free(e->message);
    e->message = NULL;
}

bool exports_sluice_operator_operator_init(operator_world_list_tuple2_string_string_t *config,
                                           exports_sluice_operator_operator_operator_error_t *err) {
    sluice_config c = {NULL, NULL, config->len};
    c.keys = xrealloc(NULL, config->len * sizeof(char *));
    c.values = xrealloc(NULL, config->len * sizeof(char *));
    for (size_t i = 0; i < config->len; i++) {
        c.keys[i] = cstr(&config->ptr[i].f0);
        c.values[i] = cstr(&config->ptr[i].f1);
    }
    operator_world_list_tuple2_string_string_free(config);
    sluice_error e = {SLUICE_INTERNAL, NULL};
    bool ok = sluice_init(&c, &e);
    for (size_t i = 0; i < c.count; i++) {
        free(c.keys[i]);
        free(c.values[i]);
    }
    free(c.keys);
    free(c.values);
    if (!ok) to_wit_error(&e, err);
    free(e.message);
    return ok;
}

/* Ends a `process` or `on-timers` call: its output on success, else its error. */
static bool finish_call(bool ok, sluice_emitter *out, sluice_error *e,
                        exports_sluice_operator_operator_process_output_t *ret,
                        exports_sluice_operator_operator_operator_error_t *err) {
    if (!ok) {
        emitter_free(out);
        to_wit_error(e, err);
        return false;
    }
    emitter_take(out, ret);
    return true;
}

bool exports_sluice_operator_operator_process(exports_sluice_operator_operator_event_batch_t *batch,
                                              exports_sluice_operator_operator_process_output_t *ret,
                                              exports_sluice_operator_operator_operator_error_t *err) {
    sluice_emitter out;
    memset(&out, 0, sizeof(out));
    sluice_error e = {SLUICE_INTERNAL, NULL};
    bool ok = true;
    const uint32_t *ko = batch->key_offsets.ptr, *vo = batch->value_offsets.ptr;
    limit = (uint32_t)batch->timestamps.len;
    for (uint32_t row = 0; ok && row < limit; row++) {
        sluice_event ev = {batch->timestamps.ptr[row],
                           batch->key_data.ptr + ko[row],
                           ko[row + 1] - ko[row],
                           batch->value_data.ptr + vo[row],
                           vo[row + 1] - vo[row],
                           row};
        out.origin = row;
        ok = sluice_process(&ev, &out, &e);
    }
    exports_sluice_operator_operator_event_batch_free(batch);
    return finish_call(ok, &out, &e, ret, err);
}

__attribute__((weak)) bool sluice_on_timer(const sluice_timer *timer, sluice_emitter *out,
                                           sluice_error *err) {
    (void)timer, (void)out, (void)err;
    return true;
}

bool exports_sluice_operator_operator_on_timers(exports_sluice_operator_operator_timer_batch_t *timers,
                                                exports_sluice_operator_operator_process_output_t *ret,
                                                exports_sluice_operator_operator_operator_error_t *err) {
    sluice_emitter out;
    memset(&out, 0, sizeof(out));
    sluice_error e = {SLUICE_INTERNAL, NULL};
    bool ok = true;
    const uint32_t *ko = timers->key_offsets.ptr;
    limit = (uint32_t)timers->times.len;
    for (uint32_t row = 0; ok && row < limit; row++) {
        sluice_timer t = {timers->times.ptr[row], timers->key_data.ptr + ko[row], ko[row + 1] - ko[row],
                          (sluice_time_domain)timers->domain, row};
        out.origin = row;
        ok = sluice_on_timer(&t, &out, &e);
    }
    exports_sluice_operator_operator_timer_batch_free(timers);
    return finish_call(ok, &out, &e, ret, err);
}

/* ---- Packed values -------------------------------------------------------------- */

sluice_packed_reader sluice_packed_reader_of(const uint8_t *value, size_t len) {
    sluice_packed_reader r = {value, len, 0};
    return r;
}

static bool packed_need(sluice_packed_reader *r, size_t n, const char *what, sluice_error *err) {
    if (r->len - r->pos < n)
        return sluice_fail(err, SLUICE_INVALID_INPUT, "packed value too short: %s at byte %zu of %zu",
                           what, r->pos, r->len);
    return true;
}

bool sluice_packed_bool(sluice_packed_reader *r, bool *out, sluice_error *err) {
    if (!packed_need(r, 1, "bool", err)) return false;
    *out = r->buf[r->pos++] != 0;
    return true;
}

/* wasm32 is little-endian, as the packed format: fields are copied as they are. */
#define PACKED_READ(fn, type, what)                                   \
    bool fn(sluice_packed_reader *r, type *out, sluice_error *err) {  \
        if (!packed_need(r, sizeof(type), what, err)) return false;   \
        memcpy(out, r->buf + r->pos, sizeof(type));                   \
        r->pos += sizeof(type);                                       \
        return true;                                                  \
    }
PACKED_READ(sluice_packed_i32, int32_t, "i32")
PACKED_READ(sluice_packed_i64, int64_t, "i64")
PACKED_READ(sluice_packed_f64, double, "f64")

bool sluice_packed_bytes(sluice_packed_reader *r, const uint8_t **out, size_t *len,
                         sluice_error *err) {
    uint32_t n;
    if (!packed_need(r, 4, "length", err)) return false;
    memcpy(&n, r->buf + r->pos, 4);
    r->pos += 4;
    if (!packed_need(r, n, "bytes", err)) return false;
    *out = r->buf + r->pos;
    *len = n;
    r->pos += n;
    return true;
}

static void packed_room(sluice_packed_writer *w, size_t n) {
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 32;
        w->buf = xrealloc(w->buf, w->cap);
    }
}

void sluice_packed_writer_clear(sluice_packed_writer *w) { w->len = 0; }

void sluice_packed_writer_free(sluice_packed_writer *w) {
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}

void sluice_packed_put_bool(sluice_packed_writer *w, bool v) {
    packed_room(w, 1);
    w->buf[w->len++] = v ? 1 : 0;
}

#define PACKED_PUT(fn, type)                        \
    void fn(sluice_packed_writer *w, type v) {      \
        packed_room(w, sizeof(type));               \
        memcpy(w->buf + w->len, &v, sizeof(type));  \
        w->len += sizeof(type);                     \
    }
PACKED_PUT(sluice_packed_put_i32, int32_t)
PACKED_PUT(sluice_packed_put_i64, int64_t)
PACKED_PUT(sluice_packed_put_f64, double)

void sluice_packed_put_bytes(sluice_packed_writer *w, const uint8_t *v, size_t len) {
    uint32_t n = (uint32_t)len;
    packed_room(w, 4 + len);
    memcpy(w->buf + w->len, &n, 4);
    if (len) memcpy(w->buf + w->len + 4, v, len);
    w->len += 4 + len;
}

/* ---- Keyed state ---------------------------------------------------------------- */

static bool declare(const char *name, sluice_operator_keyed_state_state_kind_t kind, int64_t ttl_ms,
                    sluice_state *out, sluice_error *err) {
    operator_world_string_t n = {(uint8_t *)name, strlen(name)};
    sluice_operator_keyed_state_state_error_t e;
    if (!sluice_operator_keyed_state_declare(&n, kind, ttl_ms > 0 ? &ttl_ms : NULL, out, &e))
        return state_fail(&e, err);
    return true;
}

bool sluice_value_state(const char *name, int64_t ttl_ms, sluice_state *out, sluice_error *err) {
    return declare(name, SLUICE_OPERATOR_KEYED_STATE_STATE_KIND_VALUE, ttl_ms, out, err);
}
bool sluice_map_state(const char *name, int64_t ttl_ms, sluice_state *out, sluice_error *err) {
    return declare(name, SLUICE_OPERATOR_KEYED_STATE_STATE_KIND_MAP, ttl_ms, out, err);
}
bool sluice_list_state(const char *name, int64_t ttl_ms, sluice_state *out, sluice_error *err) {
    return declare(name, SLUICE_OPERATOR_KEYED_STATE_STATE_KIND_LIST, ttl_ms, out, err);
}

void sluice_bytes_free(sluice_bytes *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
}

void sluice_byte_list_free(sluice_byte_list *l) {
    free(l->offsets);
    free(l->data);
    memset(l, 0, sizeof(*l));
}

/* A list the host returned owns its memory only when it is not empty: an empty one's
 * pointer is not from malloc (the canonical ABI passes the alignment), so it becomes NULL
 * here and is never freed. */
static void *owned(void *ptr, size_t len) {
    return len ? ptr : NULL;
}

static void take_option(operator_world_option_list_u8_t *o, sluice_bytes *out, bool *found) {
    *found = o->is_some;
    out->ptr = o->is_some ? owned(o->val.ptr, o->val.len) : NULL;
    out->len = o->is_some ? o->val.len : 0;
}

/* Moves a WIT byte list (offsets + data) into a `sluice_byte_list`. */
static void take_list(operator_world_list_u32_t offsets, operator_world_list_u8_t data,
                      sluice_byte_list *out) {
    out->offsets = owned(offsets.ptr, offsets.len);
    out->count = offsets.len ? offsets.len - 1 : 0;
    out->data = owned(data.ptr, data.len);
}

bool sluice_value_get(uint32_t row, sluice_state s, sluice_bytes *out, bool *found, sluice_error *err) {
    operator_world_option_list_u8_t o;
    sluice_operator_keyed_state_state_error_t e;
    if (!sluice_operator_keyed_state_value_get(row, s, &o, &e)) return state_fail(&e, err);
    take_option(&o, out, found);
    return true;
}

bool sluice_value_set(uint32_t row, sluice_state s, const uint8_t *v, size_t len, sluice_error *err) {
    operator_world_list_u8_t value = borrow(v, len);
    sluice_operator_keyed_state_state_error_t e;
    return sluice_operator_keyed_state_value_set(row, s, &value, &e) || state_fail(&e, err);
}

bool sluice_state_clear(uint32_t row, sluice_state s, sluice_error *err) {
    sluice_operator_keyed_state_state_error_t e;
    return sluice_operator_keyed_state_clear(row, s, &e) || state_fail(&e, err);
}

bool sluice_map_get(uint32_t row, sluice_state s, const uint8_t *k, size_t klen, sluice_bytes *out,
                    bool *found, sluice_error *err) {
    operator_world_list_u8_t key = borrow(k, klen);
    operator_world_option_list_u8_t o;
    sluice_operator_keyed_state_state_error_t e;
    if (!sluice_operator_keyed_state_map_get(row, s, &key, &o, &e)) return state_fail(&e, err);
    take_option(&o, out, found);
    return true;
}

bool sluice_map_put(uint32_t row, sluice_state s, const uint8_t *k, size_t klen, const uint8_t *v,
                    size_t vlen, sluice_error *err) {
    operator_world_list_u8_t key = borrow(k, klen), value = borrow(v, vlen);
    sluice_operator_keyed_state_state_error_t e;
    return sluice_operator_keyed_state_map_put(row, s, &key, &value, &e) || state_fail(&e, err);
}

bool sluice_map_remove(uint32_t row, sluice_state s, const uint8_t *k, size_t klen, sluice_error *err) {
    operator_world_list_u8_t key = borrow(k, klen);
    sluice_operator_keyed_state_state_error_t e;
    return sluice_operator_keyed_state_map_remove(row, s, &key, &e) || state_fail(&e, err);
}

bool sluice_map_entries(uint32_t row, sluice_state s, sluice_byte_list *keys, sluice_byte_list *values,
                        sluice_error *err) {
    sluice_operator_keyed_state_byte_map_t m;
    sluice_operator_keyed_state_state_error_t e;
    if (!sluice_operator_keyed_state_map_entries(row, s, &m, &e)) return state_fail(&e, err);
    take_list(m.key_offsets, m.key_data, keys);
    take_list(m.value_offsets, m.value_data, values);
    return true;
}

bool sluice_map_keys(uint32_t row, sluice_state s, sluice_byte_list *keys, sluice_error *err) {
    sluice_operator_keyed_state_byte_list_t l;
    sluice_operator_keyed_state_state_error_t e;
    if (!sluice_operator_keyed_state_map_keys(row, s, &l, &e)) return state_fail(&e, err);
    take_list(l.offsets, l.data, keys);
    return true;
}

bool sluice_list_get(uint32_t row, sluice_state s, sluice_byte_list *out, sluice_error *err) {
    sluice_operator_keyed_state_byte_list_t l;
    sluice_operator_keyed_state_state_error_t e;
    if (!sluice_operator_keyed_state_list_get(row, s, &l, &e)) return state_fail(&e, err);
    take_list(l.offsets, l.data, out);
    return true;
}

bool sluice_list_append(uint32_t row, sluice_state s, const uint8_t *v, size_t len, sluice_error *err) {
    operator_world_list_u8_t value = borrow(v, len);
    sluice_operator_keyed_state_state_error_t e;
    return sluice_operator_keyed_state_list_append(row, s, &value, &e) || state_fail(&e, err);
}

bool sluice_list_set(uint32_t row, sluice_state s, const uint8_t *const *items, const size_t *lens,
                     size_t count, sluice_error *err) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += lens[i];
    uint32_t *offsets = xrealloc(NULL, (count + 1) * sizeof(uint32_t));
    uint8_t *data = xrealloc(NULL, total);
    offsets[0] = 0;
    for (size_t i = 0; i < count; i++) {
        if (lens[i]) memcpy(data + offsets[i], items[i], lens[i]);
        offsets[i + 1] = offsets[i] + (uint32_t)lens[i];
    }
    sluice_operator_keyed_state_byte_list_t l = {{offsets, count + 1}, {data, total}};
    sluice_operator_keyed_state_state_error_t e;
    bool ok = sluice_operator_keyed_state_list_set(row, s, &l, &e);
    free(offsets);
    free(data);
    return ok || state_fail(&e, err);
}

/* ---- Timers --------------------------------------------------------------------- */

static bool timer_call(bool reg, uint32_t row, sluice_time_domain domain, int64_t time, sluice_error *err) {
    uint32_t new_limit;
    sluice_operator_timers_state_error_t e;
    bool ok = reg ? sluice_operator_timers_register_timer(row, (uint8_t)domain, time, &new_limit, &e)
                  : sluice_operator_timers_delete_timer(row, (uint8_t)domain, time, &new_limit, &e);
    if (!ok) return state_fail(&e, err);
    if (new_limit < limit) limit = new_limit;
    return true;
}

bool sluice_register_timer(uint32_t row, sluice_time_domain domain, int64_t time, sluice_error *err) {
    return timer_call(true, row, domain, time, err);
}

bool sluice_delete_timer(uint32_t row, sluice_time_domain domain, int64_t time, sluice_error *err) {
    return timer_call(false, row, domain, time, err);
}

bool sluice_current_watermark(uint32_t row, int64_t *out, sluice_error *err) {
    sluice_operator_timers_state_error_t e;
    return sluice_operator_timers_current_watermark(row, out, &e) || state_fail(&e, err);
}

int64_t sluice_processing_time(void) { return sluice_operator_timers_processing_time(); }

/* ---- Headers -------------------------------------------------------------------- */

bool sluice_event_headers(uint32_t row, sluice_headers *out, sluice_error *err) {
    sluice_operator_event_headers_list_header_t *l = xrealloc(NULL, sizeof(*l));
    sluice_operator_event_headers_state_error_t e;
    if (!sluice_operator_event_headers_headers(row, l, &e)) {
        free(l);
        return state_fail(&e, err);
    }
    out->count = l->len;
    out->items = xrealloc(NULL, l->len * sizeof(sluice_header));
    for (size_t i = 0; i < l->len; i++) {
        sluice_operator_event_headers_header_t *h = &l->ptr[i];
        sluice_header x = {(const char *)h->name.ptr, h->name.len, h->value.is_some ? h->value.val.ptr : NULL,
                           h->value.is_some ? h->value.val.len : 0, h->value.is_some};
        out->items[i] = x;
    }
    out->owner = l;
    return true;
}

void sluice_headers_free(sluice_headers *h) {
    if (h->owner) {
        sluice_operator_event_headers_list_header_free(h->owner);
        free(h->owner);
    }
    free(h->items);
    memset(h, 0, sizeof(*h));
}

/* ---- Log ------------------------------------------------------------------------ */

void sluice_log(sluice_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *m = vformat(fmt, ap);
    va_end(ap);
    operator_world_string_t s = {(uint8_t *)m, strlen(m)};
    sluice_operator_host_log((sluice_operator_host_log_level_t)level, &s);
    free(m);
}
