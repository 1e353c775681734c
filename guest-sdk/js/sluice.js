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

/** One input event: `timestamp` (BigInt ms), `key` and `value` (Uint8Array). */
export class Event {
  constructor(timestamp, key, value, row) {
    this.timestamp = timestamp;
    this.key = key;
    this.value = value;
    this.row = row;
  }
  /** A reader of the value's packed fields. */
  packed() {
    return new PackedReader(this.value);
  }
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

/** Base class of an operator: override `init(config)` and `process(event, out)`. */
export class Operator {
  init(_config) {}
  process(_event, _out) {
    throw new Error("an operator overrides process");
  }
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
      try {
        for (let row = 0; row < timestamps.length; row++) {
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
    onTimers(_timers) {
      throw { code: "internal", message: "timers are not supported by the JavaScript SDK yet" };
    },
  };
}
