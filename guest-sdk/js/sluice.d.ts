// Types of the Sluice guest SDK for JavaScript/TypeScript (sluice.js).

/** A typed error returned to the host. */
export class OperatorError extends Error {
  constructor(code: "invalid-config" | "invalid-input" | "internal" | "state", message: string);
  readonly code: string;
}

/** The clock a timer follows. */
export type TimeDomainName = "event-time" | "processing-time";
export const TimeDomain: { readonly EVENT_TIME: "event-time"; readonly PROCESSING_TIME: "processing-time" };

/** An event or a timer: its row scopes keyed state and timers to its key (keyed
 * operators only; otherwise the calls throw a `state` OperatorError). */
declare class Scoped {
  /** The row in its batch. */
  readonly row: number;
  /** Registers a timer for this key at `time` ms (once per key, domain and time). */
  registerTimer(time: bigint | number, domain?: TimeDomainName): void;
  /** Deletes this key's timer at `time` ms, if registered. */
  deleteTimer(time: bigint | number, domain?: TimeDomainName): void;
  /** The watermark this row meets (ms; -(2n ** 63n) before any). */
  currentWatermark(): bigint;
}

/** One input event. */
export class Event extends Scoped {
  /** Ms since the epoch. */
  readonly timestamp: bigint;
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  /** A reader of the value's packed fields. */
  packed(): PackedReader;
  /** The event's headers (a Kafka record's) as `[name, value]` pairs (`value`
   * undefined for a null value); empty when it has none. */
  headers(): Array<[string, Uint8Array | undefined]>;
}

/** A due timer. */
export class Timer extends Scoped {
  /** Ms since the epoch. */
  readonly time: bigint;
  readonly key: Uint8Array;
  readonly domain: TimeDomainName;
}

/** The host's processing time (ms since the epoch). */
export function processingTime(): bigint;

/** The row of an event or a timer, whose key a state call is about. */
type KeyContext = Event | Timer;

/** One value per key (Flink's ValueState); `ttlMs`: values expire that long after
 * their last write. Declare states in `init`. */
export class ValueState {
  constructor(name: string, ttlMs?: number | bigint);
  get(ctx: KeyContext): Uint8Array | undefined;
  set(ctx: KeyContext, value: Uint8Array | string): void;
  clear(ctx: KeyContext): void;
}

/** A map of bytes to bytes per key (Flink's MapState), in byte order of keys. */
export class MapState {
  constructor(name: string, ttlMs?: number | bigint);
  get(ctx: KeyContext, key: Uint8Array | string): Uint8Array | undefined;
  put(ctx: KeyContext, key: Uint8Array | string, value: Uint8Array | string): void;
  remove(ctx: KeyContext, key: Uint8Array | string): void;
  entries(ctx: KeyContext): Array<[Uint8Array, Uint8Array]>;
  keys(ctx: KeyContext): Uint8Array[];
  clear(ctx: KeyContext): void;
}

/** A list of bytes per key (Flink's ListState); with `ttlMs`, elements expire alone. */
export class ListState {
  constructor(name: string, ttlMs?: number | bigint);
  get(ctx: KeyContext): Uint8Array[];
  append(ctx: KeyContext, value: Uint8Array | string): void;
  set(ctx: KeyContext, values: Array<Uint8Array | string>): void;
  clear(ctx: KeyContext): void;
}

/** Collects what one call emits. */
export class Emitter {
  emit(timestamp: bigint | number, key: Uint8Array | string, value: Uint8Array | string): void;
  emitSide(output: string, timestamp: bigint | number, key: Uint8Array | string, value: Uint8Array | string): void;
}

/** The operator's configuration from the job spec. */
export class Config {
  get(key: string, fallback?: string): string | undefined;
  /** The value as an integer; throws `invalid-config` if it is not one. */
  int(key: string, fallback: number): number;
}

/** Reads the fields of a packed value in order. */
export class PackedReader {
  constructor(value: Uint8Array);
  bool(): boolean;
  i32(): number;
  i64(): bigint;
  f64(): number;
  bytes(): Uint8Array;
  str(): string;
}

/** Appends packed fields. */
export class PackedWriter {
  bool(v: boolean): this;
  i32(v: number): this;
  i64(v: bigint | number): this;
  f64(v: number): this;
  bytes(v: Uint8Array | string): this;
  str(v: string): this;
  value(): Uint8Array;
}

/** Base class of an operator. */
export class Operator {
  init(config: Config): void;
  process(event: Event, out: Emitter): void;
  /** Called for each due timer the operator registered (keyed operators). */
  onTimer(timer: Timer, out: Emitter): void;
}

/** The world's `operator` export: `export const operator = exportOperator(MyOperator);` */
export function exportOperator(cls: new () => Operator): unknown;
