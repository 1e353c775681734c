/* Drives keyed state and timers from commands: the C twin of plugins/test-state and
 * plugins/test-state-py (the same commands and outputs; see plugins/test-state-py/app.py
 * for the list), so that the host's state and timer tests run against the C SDK too. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.h"

static sluice_state v, t, m, l, script;

bool sluice_init(const sluice_config *config, sluice_error *err) {
    int64_t ttl;
    return sluice_config_int(config, "ttl_ms", 1000, &ttl, err) && sluice_value_state("v", 0, &v, err) &&
           sluice_value_state("t", ttl, &t, err) && sluice_map_state("m", 0, &m, err) &&
           sluice_list_state("l", 0, &l, err) && sluice_list_state("script", 0, &script, err);
}

/* The text a command answers, growing. */
typedef struct {
    char *buf;
    size_t len, cap;
} text;

static void add(text *s, const void *p, size_t n) {
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = 0;
}

static void adds(text *s, const char *z) { add(s, z, strlen(z)); }

static void addf(text *s, const char *fmt, int64_t n) {
    char b[64];
    snprintf(b, sizeof b, fmt, n);
    adds(s, b);
}

/* "<prefix><value or none>" for an optional value. */
static void add_opt(text *s, const char *prefix, sluice_bytes *b, bool found) {
    adds(s, prefix);
    if (found) add(s, b->ptr, b->len);
    else adds(s, "none");
    sluice_bytes_free(b);
}

/* The items of a list joined by `,`. */
static void add_items(text *s, sluice_byte_list *a, sluice_byte_list *b) {
    for (size_t i = 0; i < a->count; i++) {
        if (i) adds(s, ",");
        add(s, a->data + a->offsets[i], a->offsets[i + 1] - a->offsets[i]);
        if (b) {
            adds(s, "=");
            add(s, b->data + b->offsets[i], b->offsets[i + 1] - b->offsets[i]);
        }
    }
}

static const uint8_t *u(const char *z) { return (const uint8_t *)z; }

/* Runs command `cmd` (words `op a b`) for `row`, writing its answer to `out`. */
static bool run(char *cmd, uint32_t row, text *out, sluice_error *err) {
    /* Everything after the first word, before strtok cuts the words apart. */
    const char *space = strchr(cmd, ' ');
    char rest[256];
    snprintf(rest, sizeof rest, "%s", space ? space + 1 : "");
    char *op = strtok(cmd, " ");
    char *a = strtok(NULL, " ");
    char *b = strtok(NULL, " ");
    a = a ? a : "";
    b = b ? b : "";
    op = op ? op : "";
    sluice_bytes x;
    bool found, ok = true;
    if (!strcmp(op, "vget")) {
        if (!sluice_value_get(row, v, &x, &found, err)) return false;
        add_opt(out, "v=", &x, found);
        return true;
    } else if (!strcmp(op, "vset")) ok = sluice_value_set(row, v, u(a), strlen(a), err);
    else if (!strcmp(op, "vclear")) ok = sluice_state_clear(row, v, err);
    else if (!strcmp(op, "tget")) {
        if (!sluice_value_get(row, t, &x, &found, err)) return false;
        add_opt(out, "t=", &x, found);
        return true;
    } else if (!strcmp(op, "tset")) ok = sluice_value_set(row, t, u(a), strlen(a), err);
    else if (!strcmp(op, "mget")) {
        if (!sluice_map_get(row, m, u(a), strlen(a), &x, &found, err)) return false;
        add_opt(out, "m=", &x, found);
        return true;
    } else if (!strcmp(op, "mput")) ok = sluice_map_put(row, m, u(a), strlen(a), u(b), strlen(b), err);
    else if (!strcmp(op, "mdel")) ok = sluice_map_remove(row, m, u(a), strlen(a), err);
    else if (!strcmp(op, "mentries")) {
        sluice_byte_list keys, values;
        if (!sluice_map_entries(row, m, &keys, &values, err)) return false;
        add_items(out, &keys, &values);
        sluice_byte_list_free(&keys);
        sluice_byte_list_free(&values);
        return true;
    } else if (!strcmp(op, "mkeys")) {
        sluice_byte_list keys;
        if (!sluice_map_keys(row, m, &keys, err)) return false;
        add_items(out, &keys, NULL);
        sluice_byte_list_free(&keys);
        return true;
    } else if (!strcmp(op, "mclear")) ok = sluice_state_clear(row, m, err);
    else if (!strcmp(op, "lget")) {
        sluice_byte_list items;
        if (!sluice_list_get(row, l, &items, err)) return false;
        add_items(out, &items, NULL);
        sluice_byte_list_free(&items);
        return true;
    } else if (!strcmp(op, "lappend")) ok = sluice_list_append(row, l, u(a), strlen(a), err);
    else if (!strcmp(op, "lset")) {
        const uint8_t *items[64];
        size_t lens[64], n = 0;
        if (strcmp(a, "") && strcmp(a, "-")) {
            for (char *s = strtok(a, ","); s && n < 64; s = strtok(NULL, ",")) {
                items[n] = u(s);
                lens[n++] = strlen(s);
            }
        }
        ok = sluice_list_set(row, l, items, lens, n, err);
    } else if (!strcmp(op, "lclear")) ok = sluice_state_clear(row, l, err);
    else if (!strcmp(op, "timer")) ok = sluice_register_timer(row, SLUICE_EVENT_TIME, atoll(a), err);
    else if (!strcmp(op, "untimer")) ok = sluice_delete_timer(row, SLUICE_EVENT_TIME, atoll(a), err);
    else if (!strcmp(op, "ptimer")) ok = sluice_register_timer(row, SLUICE_PROCESSING_TIME, atoll(a), err);
    else if (!strcmp(op, "unptimer")) ok = sluice_delete_timer(row, SLUICE_PROCESSING_TIME, atoll(a), err);
    else if (!strcmp(op, "wm")) {
        int64_t wm;
        if (!sluice_current_watermark(row, &wm, err)) return false;
        addf(out, "wm=%" PRId64, wm);
        return true;
    } else if (!strcmp(op, "now")) {
        addf(out, "now=%" PRId64, sluice_processing_time());
        return true;
    } else if (!strcmp(op, "onfire")) ok = sluice_list_append(row, script, u(rest), strlen(rest), err);
    else return sluice_fail(err, SLUICE_INVALID_INPUT, "unknown command '%s'", op);
    if (ok) adds(out, "ok");
    return ok;
}

bool sluice_process(const sluice_event *e, sluice_emitter *out, sluice_error *err) {
    char *cmd = strndup((const char *)e->value, e->value_len);
    text answer = {0};
    bool ok = run(cmd, e->row, &answer, err);
    free(cmd);
    if (!ok) {
        if (err->code != SLUICE_STATE) {
            free(answer.buf);
            return false;
        }
        answer.len = 0;
        adds(&answer, "err ");
        adds(&answer, err->message);
    }
    sluice_emit(out, e->timestamp, e->key, e->key_len, u(answer.buf), answer.len);
    free(answer.buf);
    return true;
}

bool sluice_on_timer(const sluice_timer *tm, sluice_emitter *out, sluice_error *err) {
    int64_t wm;
    if (!sluice_current_watermark(tm->row, &wm, err)) return false;
    text line = {0};
    adds(&line, tm->domain == SLUICE_EVENT_TIME ? "fired e " : "fired p ");
    addf(&line, "%" PRId64, tm->time);
    addf(&line, " wm=%" PRId64, wm);
    sluice_byte_list actions;
    bool ok = sluice_list_get(tm->row, script, &actions, err);
    if (ok && actions.count > 0) {
        /* The first action runs; the rest stay. */
        size_t n = actions.count - 1;
        const uint8_t *items[64];
        size_t lens[64];
        for (size_t i = 0; i < n && i < 64; i++) {
            items[i] = actions.data + actions.offsets[i + 1];
            lens[i] = actions.offsets[i + 2] - actions.offsets[i + 1];
        }
        char *action = strndup((const char *)actions.data, actions.offsets[1]);
        ok = sluice_list_set(tm->row, script, items, lens, n < 64 ? n : 64, err);
        char *arg = strchr(action, ' ');
        size_t verb_len = arg ? (size_t)(arg - action) : strlen(action);
        arg = arg ? arg + 1 : "";
        const char *r = "ok";
        char unknown[128];
        if (ok && verb_len == 3 && !strncmp(action, "reg", 3))
            ok = sluice_register_timer(tm->row, SLUICE_EVENT_TIME, atoll(arg), err);
        else if (ok && verb_len == 4 && !strncmp(action, "preg", 4))
            ok = sluice_register_timer(tm->row, SLUICE_PROCESSING_TIME, atoll(arg), err);
        else if (ok && verb_len == 3 && !strncmp(action, "del", 3))
            ok = sluice_delete_timer(tm->row, SLUICE_EVENT_TIME, atoll(arg), err);
        else if (ok && verb_len == 4 && !strncmp(action, "vset", 4))
            ok = sluice_value_set(tm->row, v, u(arg), strlen(arg), err);
        else {
            snprintf(unknown, sizeof unknown, "unknown action '%.*s'", (int)verb_len, action);
            r = unknown;
        }
        adds(&line, " ");
        adds(&line, action);
        adds(&line, ": ");
        adds(&line, r);
        free(action);
    }
    if (ok) sluice_byte_list_free(&actions);
    if (ok) sluice_emit(out, tm->time, tm->key, tm->key_len, u(line.buf), line.len);
    free(line.buf);
    return ok;
}
