// Sluice guest SDK for JavaScript and TypeScript: write a Sluice operator as a class,
// bundled with esbuild and built into a WebAssembly component of the world
// `sluice:operator/operator-world` with componentize-js (StarlingMonkey).
//
//   import * as sluice from "sluice";
//   class Upper extends sluice.Operator {
//     process(event, out) { out.emit(event.timestamp, event.key, event.value); }
//   }
//   export const operator = sluice.exportOperator(Upper);
//
// Types: sluice.d.ts. Times are BigInt ms since the epoch; keys and values Uint8Array.

import * as keyedState from "sluice:operator/keyed-state@0.2.0";
import * as timers from "sluice:operator/timers@0.2.0";
import { headers as witHeaders } from "sluice:operator/event-headers@0.2.0";

/** A typed error returned to the host: code `invalid-config`, `invalid-input`,
 * `internal` or `state`. */
export class OperatorError extends Error {
  constructor(code, message) {
    super(message);
    if (!["invalid-config", "invalid-input", "internal", "state"].includes(code)) {
      throw new Error(`unknown error code '${code}'`);
    }
    this.code = code;
  }
}

/** Calls a host import that returns `result<_, state-error>`: its error (thrown by the
 * bindings, the error value as `payload`) becomes a `state` OperatorError. */
function call(f, ...args) {
  try {
    return f(...args);
  } catch (e) {
    const err = e && e.payload !== undefined ? e.payload : e;
    if (err && typeof err.code === "string" && typeof err.message === "string") {
      throw new OperatorError("state", `${err.code}: ${err.message}`);
    }
    throw e;
  }
}

/** The number of rows (or timers) the running call may still handle: lowered when a
 * registered event-time timer is due before later rows (see wit/operator.wit). */
let limit = 0;

/** The clock a timer follows. */
export const TimeDomain = Object.freeze({ EVENT_TIME: "event-time", PROCESSING_TIME: "processing-time" });

/** Something whose row scopes keyed state and timers to a key (an event or a timer). */
class Scoped {
  /** Registers a timer for this key at `time` ms (once per key, domain and time). */
  registerTimer(time, domain = TimeDomain.EVENT_TIME) {
    limit = Math.min(limit, call(timers.registerTimer, this.row, domain, BigInt(time)));
  }
  /** Deletes this key's timer at `time` ms, if registered. */
  deleteTimer(time, domain = TimeDomain.EVENT_TIME) {
    limit = Math.min(limit, call(timers.deleteTimer, this.row, domain, BigInt(time)));
  }
  /** The watermark this row meets (BigInt ms; -2n**63n before any). */
  currentWatermark() {
    return call(timers.currentWatermark, this.row);
  }
}

/** The host's processing time (BigInt ms since the epoch), the clock of processing-time
 * timers and state time-to-live. */
export function processingTime() {
  return timers.processingTime();
}

/** One input event: `timestamp` (BigInt ms), `key` and `value` (Uint8Array). */
export class Event extends Scoped {
  constructor(timestamp, key, value, row) {
    super();
    this.timestamp = timestamp;
    this.key = key;
    this.value = value;
    this.row = row;
  }
  /** A reader of the value's packed fields. */
  packed() {
    return new PackedReader(this.value);
  }
  /** The event's headers (a Kafka record's) as `[name, value]` pairs in record order
   * (`value` undefined for a null value); empty when it has none. Asks the host. */
  headers() {
    return call(witHeaders, this.row).map((h) => [h.name, h.value]);
  }
}

/** A due timer: `time` (BigInt ms), `key` (Uint8Array), `domain`. */
export class Timer extends Scoped {
  constructor(time, key, domain, row) {
    super();
    this.time = time;
    this.key = key;
    this.domain = domain;
    this.row = row;
  }
}

function declare(name, kind, ttlMs) {
  return call(keyedState.declare, name, kind, ttlMs === undefined ? undefined : BigInt(ttlMs));
}

function items(list) {
  const { offsets, data } = list;
  const out = [];
  for (let i = 0; i + 1 < offsets.length; i++) out.push(data.subarray(offsets[i], offsets[i + 1]));
  return out;
}

function byteList(values) {
  const bs = values.map(bytes);
  const offsets = new Uint32Array(bs.length + 1);
  let n = 0;
  bs.forEach((b, i) => { n += b.length; offsets[i + 1] = n; });
  const data = new Uint8Array(n);
  bs.forEach((b, i) => data.set(b, offsets[i]));
  return { offsets, data };
}

/** One value (bytes) per key (Flink's ValueState); `ttlMs`: values expire that long
 * after they were written. Declare states in `init`. */
export class ValueState {
  constructor(name, ttlMs) { this.handle = declare(name, "value", ttlMs); }
  /** The key's value (Uint8Array), or undefined. */
  get(ctx) { return call(keyedState.valueGet, ctx.row, this.handle); }
  set(ctx, value) { call(keyedState.valueSet, ctx.row, this.handle, bytes(value)); }
  clear(ctx) { call(keyedState.clear, ctx.row, this.handle); }
}

/** A map of bytes to bytes per key (Flink's MapState), entries in byte order of keys. */
export class MapState {
  constructor(name, ttlMs) { this.handle = declare(name, "map", ttlMs); }
  get(ctx, key) { return call(keyedState.mapGet, ctx.row, this.handle, bytes(key)); }
  put(ctx, key, value) { call(keyedState.mapPut, ctx.row, this.handle, bytes(key), bytes(value)); }
  remove(ctx, key) { call(keyedState.mapRemove, ctx.row, this.handle, bytes(key)); }
  /** The entries as `[key, value]` pairs of Uint8Array, in byte order of keys. */
  entries(ctx) {
    const m = call(keyedState.mapEntries, ctx.row, this.handle);
    const keys = items({ offsets: m.keyOffsets, data: m.keyData });
    const values = items({ offsets: m.valueOffsets, data: m.valueData });
    return keys.map((k, i) => [k, values[i]]);
  }
  keys(ctx) { return items(call(keyedState.mapKeys, ctx.row, this.handle)); }
  clear(ctx) { call(keyedState.clear, ctx.row, this.handle); }
}

/** A list of bytes per key (Flink's ListState); with `ttlMs`, each element expires alone. */
export class ListState {
  constructor(name, ttlMs) { this.handle = declare(name, "list", ttlMs); }
  get(ctx) { return items(call(keyedState.listGet, ctx.row, this.handle)); }
  append(ctx, value) { call(keyedState.listAppend, ctx.row, this.handle, bytes(value)); }
  set(ctx, values) { call(keyedState.listSet, ctx.row, this.handle, byteList(values)); }
  clear(ctx) { call(keyedState.clear, ctx.row, this.handle); }
}

/** Output columns, growing by doubling. */
class Columns {
  constructor() {
    this.n = 0;
    this.timestamps = new BigInt64Array(64);
    this.origins = new Uint32Array(64);
    this.keyOffsets = new Uint32Array(65);
    this.valueOffsets = new Uint32Array(65);
    this.keyData = new Uint8Array(1024);
    this.valueData = new Uint8Array(4096);
  }
  static grow(a, need) {
    if (need <= a.length) return a;
    const b = new a.constructor(Math.max(need, a.length * 2));
    b.set(a);
    return b;
  }
  push(origin, timestamp, key, value) {
    const i = this.n;
    this.timestamps = Columns.grow(this.timestamps, i + 1);
    this.origins = Columns.grow(this.origins, i + 1);
    this.keyOffsets = Columns.grow(this.keyOffsets, i + 2);
    this.valueOffsets = Columns.grow(this.valueOffsets, i + 2);
    const k = this.keyOffsets[i];
    const v = this.valueOffsets[i];
    this.keyData = Columns.grow(this.keyData, k + key.length);
    this.valueData = Columns.grow(this.valueData, v + value.length);
    this.keyData.set(key, k);
    this.valueData.set(value, v);
    this.keyOffsets[i + 1] = k + key.length;
    this.valueOffsets[i + 1] = v + value.length;
    this.timestamps[i] = BigInt(timestamp);
    this.origins[i] = origin;
    this.n = i + 1;
  }
  toWit() {
    const n = this.n;
    return {
      events: {
        timestamps: this.timestamps.subarray(0, n),
        keyOffsets: this.keyOffsets.subarray(0, n + 1),
        keyData: this.keyData.subarray(0, this.keyOffsets[n]),
        valueOffsets: this.valueOffsets.subarray(0, n + 1),
        valueData: this.valueData.subarray(0, this.valueOffsets[n]),
      },
      origins: this.origins.subarray(0, n),
    };
  }
}

/** Collects what one call emits, on the main output and named side outputs. */
export class Emitter {
  constructor() {
    this.main = new Columns();
    this.side = new Map();
    this.origin = 0;
  }
  /** Emits an event on the main output (`key` and `value` Uint8Array or string). */
  emit(timestamp, key, value) {
    this.main.push(this.origin, timestamp, bytes(key), bytes(value));
  }
  /** Emits an event on side output `output`. */
  emitSide(output, timestamp, key, value) {
    let c = this.side.get(output);
    if (!c) this.side.set(output, (c = new Columns()));
    c.push(this.origin, timestamp, bytes(key), bytes(value));
  }
  toWit() {
    return {
      main: this.main.toWit(),
      side: [...this.side].map(([name, c]) => ({ name, batch: c.toWit() })),
    };
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function bytes(x) {
  return typeof x === "string" ? encoder.encode(x) : x;
}

/** The operator's configuration: string keys and values. */
export class Config {
  constructor(pairs) {
    this.map = new Map(pairs);
  }
  get(key, fallback) {
    return this.map.has(key) ? this.map.get(key) : fallback;
  }
  /** The value of `key` as an integer; `invalid-config` if it is not one. */
  int(key, fallback) {
    if (!this.map.has(key)) return fallback;
    const v = this.map.get(key);
    if (!/^-?\d+$/.test(v.trim())) {
      throw new OperatorError("invalid-config", `${key}: '${v}' is not an integer`);
    }
    return parseInt(v, 10);
  }
}

/** Reads the fields of a packed value in order (see host/packed). */
export class PackedReader {
  constructor(value) {
    this.buf = value;
    this.view = new DataView(value.buffer, value.byteOffset, value.byteLength);
    this.pos = 0;
  }
  need(n, what) {
    if (this.pos + n > this.buf.length) {
      throw new OperatorError(
        "invalid-input",
        `packed value too short: ${what} at byte ${this.pos} of ${this.buf.length}`,
      );
    }
  }
  bool() { this.need(1, "bool"); return this.buf[this.pos++] !== 0; }
  i32() { this.need(4, "i32"); const v = this.view.getInt32(this.pos, true); this.pos += 4; return v; }
  /** An i64 as a BigInt. */
  i64() { this.need(8, "i64"); const v = this.view.getBigInt64(this.pos, true); this.pos += 8; return v; }
  f64() { this.need(8, "f64"); const v = this.view.getFloat64(this.pos, true); this.pos += 8; return v; }
  bytes() {
    this.need(4, "length");
    const n = this.view.getUint32(this.pos, true);
    this.pos += 4;
    this.need(n, "bytes");
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  str() { return decoder.decode(this.bytes()); }
}

/** Appends packed fields; `value()` is the packed value. */
export class PackedWriter {
  constructor() {
    this.buf = new Uint8Array(64);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }
  room(n) {
    if (this.pos + n > this.buf.length) {
      const b = new Uint8Array(Math.max(this.pos + n, this.buf.length * 2));
      b.set(this.buf);
      this.buf = b;
      this.view = new DataView(b.buffer);
    }
  }
  bool(v) { this.room(1); this.buf[this.pos++] = v ? 1 : 0; return this; }
  i32(v) {
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new OperatorError("invalid-input", `${v} does not fit in an i32`);
    }
    this.room(4); this.view.setInt32(this.pos, v, true); this.pos += 4; return this;
  }
  i64(v) { this.room(8); this.view.setBigInt64(this.pos, BigInt(v), true); this.pos += 8; return this; }
  f64(v) { this.room(8); this.view.setFloat64(this.pos, v, true); this.pos += 8; return this; }
  bytes(v) {
    v = bytes(v);
    this.room(4 + v.length);
    this.view.setUint32(this.pos, v.length, true);
    this.buf.set(v, this.pos + 4);
    this.pos += 4 + v.length;
    return this;
  }
  str(v) { return this.bytes(encoder.encode(v)); }
  value() { return this.buf.slice(0, this.pos); }
}

/** Base class of an operator: override `init(config)`, `process(event, out)` and, for
 * timers, `onTimer(timer, out)`. */
export class Operator {
  init(_config) {}
  process(_event, _out) {
    throw new Error("an operator overrides process");
  }
  onTimer(_timer, _out) {}
}

function toWitError(e) {
  if (e instanceof OperatorError) return { code: e.code, message: e.message };
  const name = (e && e.name) || "Error";
  const stack = e && e.stack ? `\n${e.stack}`.trimEnd() : "";
  return { code: "internal", message: `${name}: ${e && e.message !== undefined ? e.message : e}${stack}` };
}

/** The world's `operator` export running an instance of `cls`:
 * `export const operator = exportOperator(MyOperator);` */
export function exportOperator(cls) {
  let op = null;
  return {
    init(config) {
      try {
        op = new cls();
        op.init(new Config(config));
      } catch (e) {
        throw toWitError(e);
      }
    },
    process(batch) {
      const out = new Emitter();
      const { timestamps, keyOffsets, keyData, valueOffsets, valueData } = batch;
      limit = timestamps.length;
      try {
        for (let row = 0; row < limit; row++) {
          out.origin = row;
          op.process(
            new Event(
              timestamps[row],
              keyData.subarray(keyOffsets[row], keyOffsets[row + 1]),
              valueData.subarray(valueOffsets[row], valueOffsets[row + 1]),
              row,
            ),
            out,
          );
        }
      } catch (e) {
        throw toWitError(e);
      }
      return out.toWit();
    },
    onTimers(batch) {
      const out = new Emitter();
      const { domain, times, keyOffsets, keyData } = batch;
      limit = times.length;
      try {
        for (let row = 0; row < limit; row++) {
          out.origin = row;
          op.onTimer(new Timer(times[row], keyData.subarray(keyOffsets[row], keyOffsets[row + 1]), domain, row), out);
        }
      } catch (e) {
        throw toWitError(e);
      }
      return out.toWit();
    },
  };
}
