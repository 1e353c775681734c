"""Keyed state (Flink's ValueState, MapState, ListState), scoped to the key of the
event or timer passed to each call. Values are bytes: encode them as you like (for
example with `PackedWriter`, `json` or `struct`). Declare states in `init`."""

from typing import Dict, List, Optional

from wit_world.imports import keyed_state

from .operator import _call


def _declare(name: str, kind, ttl_ms: Optional[int]) -> int:
    return _call(keyed_state.declare, name, kind, ttl_ms)


def _items(bl) -> List[bytes]:
    o, d = bl.offsets, bl.data
    return [d[o[i] : o[i + 1]] for i in range(len(o) - 1)]


class ValueState:
    """One value per key. `ttl_ms`: values expire that long after they were written."""

    def __init__(self, name: str, ttl_ms: Optional[int] = None):
        self.handle = _declare(name, keyed_state.StateKind.VALUE, ttl_ms)

    def get(self, ctx) -> Optional[bytes]:
        """The key's value, or None."""
        return _call(keyed_state.value_get, ctx.row, self.handle)

    def set(self, ctx, value: bytes) -> None:
        """Sets the key's value."""
        _call(keyed_state.value_set, ctx.row, self.handle, value)

    def clear(self, ctx) -> None:
        """Removes the key's value."""
        _call(keyed_state.clear, ctx.row, self.handle)


class MapState:
    """A map of bytes to bytes per key."""

    def __init__(self, name: str, ttl_ms: Optional[int] = None):
        self.handle = _declare(name, keyed_state.StateKind.MAP, ttl_ms)

    def get(self, ctx, key: bytes) -> Optional[bytes]:
        return _call(keyed_state.map_get, ctx.row, self.handle, key)

    def put(self, ctx, key: bytes, value: bytes) -> None:
        _call(keyed_state.map_put, ctx.row, self.handle, key, value)

    def remove(self, ctx, key: bytes) -> None:
        _call(keyed_state.map_remove, ctx.row, self.handle, key)

    def entries(self, ctx) -> Dict[bytes, bytes]:
        m = _call(keyed_state.map_entries, ctx.row, self.handle)
        ko, kd, vo, vd = m.key_offsets, m.key_data, m.value_offsets, m.value_data
        return {kd[ko[i] : ko[i + 1]]: vd[vo[i] : vo[i + 1]] for i in range(len(ko) - 1)}

    def keys(self, ctx) -> List[bytes]:
        return _items(_call(keyed_state.map_keys, ctx.row, self.handle))

    def clear(self, ctx) -> None:
        _call(keyed_state.clear, ctx.row, self.handle)


class ListState:
    """A list of bytes per key, appended to; with `ttl_ms`, each element expires alone."""

    def __init__(self, name: str, ttl_ms: Optional[int] = None):
        self.handle = _declare(name, keyed_state.StateKind.LIST, ttl_ms)

    def get(self, ctx) -> List[bytes]:
        return _items(_call(keyed_state.list_get, ctx.row, self.handle))

    def append(self, ctx, value: bytes) -> None:
        _call(keyed_state.list_append, ctx.row, self.handle, value)

    def set(self, ctx, values: List[bytes]) -> None:
        offsets, data = [0], bytearray()
        for v in values:
            data += v
            offsets.append(len(data))
        _call(keyed_state.list_set, ctx.row, self.handle, keyed_state.ByteList(offsets=offsets, data=bytes(data)))

    def clear(self, ctx) -> None:
        _call(keyed_state.clear, ctx.row, self.handle)
