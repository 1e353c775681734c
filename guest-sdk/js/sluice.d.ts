// Types of the Sluice guest SDK for JavaScript/TypeScript (sluice.js).

/** A typed error returned to the host. */
export class OperatorError extends Error {
  constructor(code: "invalid-config" | "invalid-input" | "internal" | "state", message: string);
  readonly code: string;
}

/** One input event. */
export class Event {
  /** Ms since the epoch. */
  readonly timestamp: bigint;
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  /** The event's row in its batch. */
  readonly row: number;
  /** A reader of the value's packed fields. */
  packed(): PackedReader;
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
}

/** The world's `operator` export: `export const operator = exportOperator(MyOperator);` */
export function exportOperator(cls: new () => Operator): unknown;
