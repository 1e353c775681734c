/* Sluice guest SDK for C: write a Sluice operator as three functions.
 *
 *   #include "sluice.h"
 *   bool sluice_init(const sluice_config *config, sluice_error *err) { return true; }
 *   bool sluice_process(const sluice_event *e, sluice_emitter *out, sluice_error *err) {
 *       sluice_emit(out, e->timestamp, e->key, e->key_len, e->value, e->value_len);
 *       return true;
 *   }
 *
 * `sluice build <folder>` (a folder with `app.c`) compiles it with clang for wasm32-wasi
 * against the bindings generated from the WIT world `sluice:operator/operator-world`,
 * and makes the component (with the WASI preview-1 adapter). See README.md.
 *
 * Conventions: every call that can fail returns `bool` (true: success) and, on failure,
 * fills `*err` (code and message) — return false from your function to hand it to the
 * host, which reports it as a typed operator error. Bytes handed to you (an event's key
 * and value, config values, state values) are valid until your function returns; copy
 * what you keep. Buffers the SDK returns that you own say so and are freed with
 * `sluice_free`.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Errors ---------------------------------------------------------------------- */

/** The kind of an operator error (the WIT's `error-code`). */
typedef enum {
    SLUICE_INVALID_CONFIG = 0, /* the configuration misses a key or has a bad value */
    SLUICE_INVALID_INPUT = 1,  /* an event could not be processed */
    SLUICE_INTERNAL = 2,       /* any other failure */
    SLUICE_STATE = 3,          /* a keyed state or timer call failed */
} sluice_error_code;

/** An error: a code and a message (owned by the error; set with `sluice_fail`). */
typedef struct {
    sluice_error_code code;
    char *message;
} sluice_error;

/** Sets `*err` to `code` with a printf-style message and returns false, so that
 * `return sluice_fail(err, SLUICE_INVALID_INPUT, "bad value %d", v);` fails a call. */
bool sluice_fail(sluice_error *err, sluice_error_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Configuration --------------------------------------------------------------- */

/** The operator's configuration from the job spec: string keys and values. */
typedef struct sluice_config sluice_config;

/** The value of `key` (NUL-terminated, valid during `sluice_init`), or NULL. */
const char *sluice_config_get(const sluice_config *config, const char *key);

/** The value of `key` as an integer in `*out` (`fallback` when absent); an
 * `invalid-config` error when it is not an integer. */
bool sluice_config_int(const sluice_config *config, const char *key, int64_t fallback,
                       int64_t *out, sluice_error *err);

/* ---- Events and output ----------------------------------------------------------- */

/** One input event, borrowed from the batch being processed. */
typedef struct {
    int64_t timestamp; /* event time, ms since the Unix epoch */
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    uint32_t row; /* the event's row in its batch: scopes state and timer calls */
} sluice_event;

/** Collects what one call emits. */
typedef struct sluice_emitter sluice_emitter;

/** Emits an event on the main output (the bytes are copied). */
void sluice_emit(sluice_emitter *out, int64_t timestamp, const uint8_t *key, size_t key_len,
                 const uint8_t *value, size_t value_len);

/** Emits an event on side output `output` (a name wired in the job spec). */
void sluice_emit_side(sluice_emitter *out, const char *output, int64_t timestamp,
                      const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len);

/* ---- The operator: functions you write ------------------------------------------- */

/** Called once, before any event, with the configuration. */
bool sluice_init(const sluice_config *config, sluice_error *err);

/** Called for each input event, in stream order. */
bool sluice_process(const sluice_event *event, sluice_emitter *out, sluice_error *err);

/** A due timer: its time (ms), its key, its domain, and its row (scoping state calls). */
typedef enum { SLUICE_EVENT_TIME = 0, SLUICE_PROCESSING_TIME = 1 } sluice_time_domain;
typedef struct {
    int64_t time;
    const uint8_t *key;
    size_t key_len;
    sluice_time_domain domain;
    uint32_t row;
} sluice_timer;

/** Called for each due timer the operator registered (keyed operators). Optional: the
 * SDK's default (a weak symbol) does nothing. */
bool sluice_on_timer(const sluice_timer *timer, sluice_emitter *out, sluice_error *err);

/* ---- Packed values (see host/packed): fields in schema order -------------------- */

/** Reads the fields of one packed value in order; bounds-checked (a short value is an
 * `invalid-input` error). */
typedef struct {
    const uint8_t *buf;
    size_t len;
    size_t pos;
} sluice_packed_reader;

sluice_packed_reader sluice_packed_reader_of(const uint8_t *value, size_t len);
bool sluice_packed_bool(sluice_packed_reader *r, bool *out, sluice_error *err);
bool sluice_packed_i32(sluice_packed_reader *r, int32_t *out, sluice_error *err);
bool sluice_packed_i64(sluice_packed_reader *r, int64_t *out, sluice_error *err);
bool sluice_packed_f64(sluice_packed_reader *r, double *out, sluice_error *err);
/** A `bytes` or `str` field, in place (not NUL-terminated). */
bool sluice_packed_bytes(sluice_packed_reader *r, const uint8_t **out, size_t *len,
                         sluice_error *err);

/** Appends packed fields to a growing buffer; `buf[0..len]` is the value. Reuse one
 * writer with `sluice_packed_writer_clear`; free it with `sluice_packed_writer_free`. */
typedef struct {
    uint8_t *buf;
    size_t len;
    size_t cap;
} sluice_packed_writer;

void sluice_packed_writer_clear(sluice_packed_writer *w);
void sluice_packed_writer_free(sluice_packed_writer *w);
void sluice_packed_put_bool(sluice_packed_writer *w, bool v);
void sluice_packed_put_i32(sluice_packed_writer *w, int32_t v);
void sluice_packed_put_i64(sluice_packed_writer *w, int64_t v);
void sluice_packed_put_f64(sluice_packed_writer *w, double v);
void sluice_packed_put_bytes(sluice_packed_writer *w, const uint8_t *v, size_t len);

/* ---- Keyed state and timers (keyed operators; Flink's KeyedProcessFunction) ----- */

/* Every call takes `row`: the row of the event (or timer) whose key it is about. A
 * refused call (not keyed, a bad row, ...) is a `state` error naming why. */

/** A state's handle, from a `declare` (usually in `sluice_init`). */
typedef uint32_t sluice_state;

/** Declares value, map or list state `name`; `ttl_ms > 0`: entries expire that long
 * (processing time) after their last write; `0`: never. */
bool sluice_value_state(const char *name, int64_t ttl_ms, sluice_state *out, sluice_error *err);
bool sluice_map_state(const char *name, int64_t ttl_ms, sluice_state *out, sluice_error *err);
bool sluice_list_state(const char *name, int64_t ttl_ms, sluice_state *out, sluice_error *err);

/** A value read from state, owned by the caller (free with `sluice_bytes_free`). */
typedef struct {
    uint8_t *ptr;
    size_t len;
} sluice_bytes;
void sluice_bytes_free(sluice_bytes *b);

/** A list of byte strings read from state, owned by the caller. Item `i` is
 * `data[offsets[i] .. offsets[i + 1]]`; free with `sluice_byte_list_free`. */
typedef struct {
    uint32_t *offsets;
    size_t count; /* items; `offsets` has count + 1 entries */
    uint8_t *data;
} sluice_byte_list;
void sluice_byte_list_free(sluice_byte_list *l);

/** The row's key's value: `*found` false when none. */
bool sluice_value_get(uint32_t row, sluice_state s, sluice_bytes *out, bool *found,
                      sluice_error *err);
bool sluice_value_set(uint32_t row, sluice_state s, const uint8_t *v, size_t len,
                      sluice_error *err);
/** Removes every entry of the row's key in state `s` (of any kind). */
bool sluice_state_clear(uint32_t row, sluice_state s, sluice_error *err);

bool sluice_map_get(uint32_t row, sluice_state s, const uint8_t *k, size_t klen,
                    sluice_bytes *out, bool *found, sluice_error *err);
bool sluice_map_put(uint32_t row, sluice_state s, const uint8_t *k, size_t klen,
                    const uint8_t *v, size_t vlen, sluice_error *err);
bool sluice_map_remove(uint32_t row, sluice_state s, const uint8_t *k, size_t klen,
                       sluice_error *err);
/** The map's keys (`keys`) and values (`values`, same order), in byte order of keys. */
bool sluice_map_entries(uint32_t row, sluice_state s, sluice_byte_list *keys,
                        sluice_byte_list *values, sluice_error *err);

/** The map's keys, in byte order. */
bool sluice_map_keys(uint32_t row, sluice_state s, sluice_byte_list *keys, sluice_error *err);

bool sluice_list_get(uint32_t row, sluice_state s, sluice_byte_list *out, sluice_error *err);
bool sluice_list_append(uint32_t row, sluice_state s, const uint8_t *v, size_t len,
                        sluice_error *err);
/** Replaces the list with `count` items `items[i][0 .. lens[i]]`. */
bool sluice_list_set(uint32_t row, sluice_state s, const uint8_t *const *items,
                     const size_t *lens, size_t count, sluice_error *err);

/** Registers (or deletes) the row's key's timer at `time` ms in `domain`. */
bool sluice_register_timer(uint32_t row, sluice_time_domain domain, int64_t time,
                           sluice_error *err);
bool sluice_delete_timer(uint32_t row, sluice_time_domain domain, int64_t time,
                         sluice_error *err);
/** The watermark the row met (INT64_MIN before any). */
bool sluice_current_watermark(uint32_t row, int64_t *out, sluice_error *err);
/** The host's processing time, ms since the epoch. */
int64_t sluice_processing_time(void);

/* ---- Headers -------------------------------------------------------------------- */

/** One header: a name and a value (`has_value` false: a null value). */
typedef struct {
    const char *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
    bool has_value;
} sluice_header;

/** The event's headers (a Kafka record's), in record order; free with
 * `sluice_headers_free`. */
typedef struct {
    sluice_header *items;
    size_t count;
    void *owner; /* the SDK's */
} sluice_headers;

bool sluice_event_headers(uint32_t row, sluice_headers *out, sluice_error *err);
void sluice_headers_free(sluice_headers *h);

/* ---- Logging -------------------------------------------------------------------- */

typedef enum { SLUICE_TRACE, SLUICE_DEBUG, SLUICE_INFO, SLUICE_WARN, SLUICE_ERROR } sluice_log_level;
/** Writes a printf-style message to the job's log, tagged with the operator. */
void sluice_log(sluice_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
