"""The operator interface and its glue to the WIT world's `operator` export."""

import traceback
from itertools import accumulate
from enum import Enum
from typing import Dict, Iterable, List, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import event_headers, host, timers, types

from .packed import PackedReader


class OperatorError(Exception):
    """A typed error returned to the host: `code` is `invalid-config`, `invalid-input`,
    `internal` or `state`."""

    _CODES = {
        "invalid-config": types.ErrorCode.INVALID_CONFIG,
        "invalid-input": types.ErrorCode.INVALID_INPUT,
        "internal": types.ErrorCode.INTERNAL,
        "state": types.ErrorCode.STATE,
    }

    def __init__(self, code: str, message: str):
        if code not in self._CODES:
            raise ValueError(f"unknown error code {code!r}: use one of {sorted(self._CODES)}")
        super().__init__(message)
        self.code = code
        self.message = message

    def to_wit(self) -> types.OperatorError:
        return types.OperatorError(code=self._CODES[self.code], message=self.message)


class TimeDomain(Enum):
    """Event time (fires when the watermark passes) or processing time (the wall clock)."""

    EVENT_TIME = types.TimeDomain.EVENT_TIME
    PROCESSING_TIME = types.TimeDomain.PROCESSING_TIME


class _Limit:
    """The number of rows (or timers) the running call may handle: lowered when a
    registered event-time timer is due before later rows (see wit/operator.wit)."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


_limit = _Limit()


class _Scoped:
    """Something whose row scopes keyed state and timers to a key."""

    __slots__ = ()

    def register_timer(self, time: int, domain: TimeDomain = TimeDomain.EVENT_TIME) -> None:
        """Registers a timer for this key at `time` ms (once per key and time)."""
        _limit.value = min(_limit.value, _call(timers.register_timer, self.row, domain.value, time))

    def delete_timer(self, time: int, domain: TimeDomain = TimeDomain.EVENT_TIME) -> None:
        """Deletes this key's timer at `time` ms, if registered."""
        _limit.value = min(_limit.value, _call(timers.delete_timer, self.row, domain.value, time))

    def current_watermark(self) -> int:
        """The watermark this event meets (ms; -2**63 before any)."""
        return _call(timers.current_watermark, self.row)


class Event(_Scoped):
    """One input event: `timestamp` (ms since the epoch), `key` and `value` (bytes).

    `key` and `value` are cut from the batch's columns when first read, and `packed()`
    reads the value in place: an operator pays only for what it touches."""

    __slots__ = ("timestamp", "row", "_cols")

    def __init__(self, timestamp: int, row: int, cols):
        self.timestamp = timestamp
        self.row = row
        # (key_offsets, key_data, value_offsets, value_data) of the batch.
        self._cols = cols

    @property
    def key(self) -> bytes:
        ko, kd = self._cols[0], self._cols[1]
        return kd[ko[self.row] : ko[self.row + 1]]

    @property
    def value(self) -> bytes:
        vo, vd = self._cols[2], self._cols[3]
        return vd[vo[self.row] : vo[self.row + 1]]

    def packed(self) -> PackedReader:
        """A reader of the value's packed fields (reading in place, no copy)."""
        vo = self._cols[2]
        return PackedReader(self._cols[3], vo[self.row], vo[self.row + 1])

    def headers(self) -> List[Tuple[str, Optional[bytes]]]:
        """The event's headers (a Kafka record's) as `(name, value)` pairs in record
        order (`None`: a null value); empty when it has none. Asks the host on each call."""
        return [(h.name, h.value) for h in _call(event_headers.headers, self.row)]


class Timer(_Scoped):
    """A due timer: `time` (ms), `key` (bytes), `domain`."""

    __slots__ = ("time", "key", "domain", "row")

    def __init__(self, time: int, key: bytes, domain: TimeDomain, row: int):
        self.time = time
        self.key = key
        self.domain = domain
        self.row = row


class _Columns:
    """Output events, gathered as Python lists (one append per field) and turned into the
    flat columns the host reads once per call, with C-level joins and sums."""

    __slots__ = ("timestamps", "keys", "values", "origins")

    def __init__(self):
        self.timestamps: List[int] = []
        self.keys: List[bytes] = []
        self.values: List[bytes] = []
        self.origins: List[int] = []

    def push(self, origin: int, timestamp: int, key: bytes, value: bytes) -> None:
        self.timestamps.append(timestamp)
        self.keys.append(key)
        self.values.append(value)
        self.origins.append(origin)

    def to_wit(self) -> types.OutputBatch:
        return types.OutputBatch(
            events=types.EventBatch(
                timestamps=self.timestamps,
                key_offsets=[0, *accumulate(map(len, self.keys))],
                key_data=b"".join(self.keys),
                value_offsets=[0, *accumulate(map(len, self.values))],
                value_data=b"".join(self.values),
            ),
            origins=self.origins,
        )


class Emitter:
    """Collects what one call emits, on the main output and on named side outputs."""

    __slots__ = ("_main", "_side", "_origin")

    def __init__(self):
        self._main = _Columns()
        self._side: Dict[str, _Columns] = {}
        self._origin = 0

    def emit(self, timestamp: int, key: bytes, value: bytes) -> None:
        """Emits an event on the main output."""
        self._main.push(self._origin, timestamp, key, value)

    def emit_side(self, output: str, timestamp: int, key: bytes, value: bytes) -> None:
        """Emits an event on side output `output` (declared in the job spec)."""
        cols = self._side.get(output)
        if cols is None:
            cols = self._side[output] = _Columns()
        cols.push(self._origin, timestamp, key, value)

    def _to_wit(self) -> types.ProcessOutput:
        return types.ProcessOutput(
            main=self._main.to_wit(),
            side=[types.SideOutput(name=n, batch=c.to_wit()) for n, c in self._side.items()],
        )


class Config:
    """The operator's configuration from the job spec: string keys and values."""

    def __init__(self, pairs: Iterable[Tuple[str, str]]):
        self._items = dict(pairs)

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The value of `key`, or `default`."""
        return self._items.get(key, default)

    def int(self, key: str, default: int) -> int:
        """The value of `key` as an integer, or `default`; an `invalid-config` error if
        it is not one."""
        v = self._items.get(key)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise OperatorError("invalid-config", f"{key}: {v!r} is not an integer") from None

    def items(self):
        """Every `(key, value)`."""
        return self._items.items()


class Operator:
    """Base class of a Python operator. Override `init`, `process`, and `on_timer` if the
    operator registers timers."""

    def init(self, config: Config) -> None:
        """Called once per instance, before any event, with the spec's `config`."""

    def process(self, event: Event, out: Emitter) -> None:
        """Called for each input event, in stream order."""
        raise NotImplementedError("an operator overrides process")

    def on_timer(self, timer: Timer, out: Emitter) -> None:
        """Called for each due timer the operator registered."""


def log(message: str, level: str = "info") -> None:
    """Writes `message` to the job's log (`trace`, `debug`, `info`, `warn`, `error`)."""
    host.log(host.LogLevel[level.upper()], message)


def _call(f, *args):
    """Calls an import that returns `result<_, state-error>`: its error becomes a
    `state` OperatorError."""
    try:
        return f(*args)
    except Err as e:
        err = e.value
        raise OperatorError("state", f"{err.code.name.lower().replace('_', '-')}: {err.message}") from None


def _as_wit_error(e: BaseException) -> Err:
    if isinstance(e, OperatorError):
        return Err(e.to_wit())
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return Err(
        types.OperatorError(
            code=types.ErrorCode.INTERNAL,
            message=f"{type(e).__name__}: {e}\n{tb.rstrip()}",
        )
    )


def export(cls):
    """The class componentize-py exports as the world's `operator` interface (assign it to
    `Operator` in the app module), running an instance of `cls`."""

    # componentize-py may make a new instance of the exported class per call: the
    # operator instance lives here, one per component instance.
    state = {}

    class Exported:
        def init(self, config):
            try:
                op = state["op"] = cls()
                op.init(Config(config))
            except BaseException as e:  # noqa: BLE001 - every error goes to the host
                raise _as_wit_error(e) from None

        def process(self, batch):
            out = Emitter()
            ts = batch.timestamps
            cols = (batch.key_offsets, batch.key_data, batch.value_offsets, batch.value_data)
            n = len(ts)
            _limit.value = n
            process = state["op"].process
            try:
                row = 0
                while row < _limit.value:
                    out._origin = row
                    process(Event(ts[row], row, cols), out)
                    row += 1
            except BaseException as e:  # noqa: BLE001
                raise _as_wit_error(e) from None
            return out._to_wit()

        def on_timers(self, batch):
            out = Emitter()
            times, ko, kd = batch.times, batch.key_offsets, batch.key_data
            domain = TimeDomain(batch.domain)
            _limit.value = len(times)
            on_timer = state["op"].on_timer
            try:
                row = 0
                while row < _limit.value:
                    out._origin = row
                    on_timer(Timer(times[row], kd[ko[row] : ko[row + 1]], domain, row), out)
                    row += 1
            except BaseException as e:  # noqa: BLE001
                raise _as_wit_error(e) from None
            return out._to_wit()

    Exported.__name__ = "Operator"
    return Exported
