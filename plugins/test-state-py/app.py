"""Drives keyed state and timers from commands: the Python twin of plugins/test-state
(the same commands and outputs, for the commands listed here), so that the host's state
and timer tests run against the Python SDK too.

Each event's value is a command about the event's key; the operator emits one event with
the same timestamp and key whose value is the result (`ok`, a value, or `err <message>`).
States: value `v`, value `t` (time-to-live config `ttl_ms`, default 1000), map `m`, list
`l`, list `script`. Commands: `vget`, `vset X`, `vclear`, `tget`, `tset X`, `mget K`,
`mput K V`, `mdel K`, `mentries`, `mkeys`, `mclear`, `lget`, `lappend X`, `lset a,b` (`-`
for empty), `lclear`, `timer T`, `untimer T`, `ptimer T`, `unptimer T`, `wm`, `now`,
`onfire ACTION` (when a timer of the key fires, the first action runs: `reg T`, `preg T`,
`del T`, `vset X`). Timers emit `fired <e|p> <time> wm=<watermark>[ <action>: <result>]`.
"""

import sluice
from sluice import TimeDomain
from wit_world.imports import timers as wit_timers

EVENT, PROCESSING = TimeDomain.EVENT_TIME, TimeDomain.PROCESSING_TIME


def text(b):
    return b.decode() if b is not None else "none"


class TestState(sluice.Operator):
    def init(self, config):
        ttl = config.int("ttl_ms", 1000)
        self.v = sluice.ValueState("v")
        self.t = sluice.ValueState("t", ttl_ms=ttl)
        self.m = sluice.MapState("m")
        self.l = sluice.ListState("l")
        self.script = sluice.ListState("script")

    def run(self, cmd, e):
        words = cmd.split(" ")
        op = words[0]
        a = words[1] if len(words) > 1 else ""
        b = words[2] if len(words) > 2 else ""
        if op == "vget":
            return "v=" + text(self.v.get(e))
        if op == "vset":
            self.v.set(e, a.encode())
        elif op == "vclear":
            self.v.clear(e)
        elif op == "tget":
            return "t=" + text(self.t.get(e))
        elif op == "tset":
            self.t.set(e, a.encode())
        elif op == "mget":
            return "m=" + text(self.m.get(e, a.encode()))
        elif op == "mput":
            self.m.put(e, a.encode(), b.encode())
        elif op == "mdel":
            self.m.remove(e, a.encode())
        elif op == "mentries":
            return ",".join(f"{k.decode()}={v.decode()}" for k, v in self.m.entries(e).items())
        elif op == "mkeys":
            return ",".join(k.decode() for k in self.m.keys(e))
        elif op == "mclear":
            self.m.clear(e)
        elif op == "lget":
            return ",".join(x.decode() for x in self.l.get(e))
        elif op == "lappend":
            self.l.append(e, a.encode())
        elif op == "lset":
            self.l.set(e, [] if a in ("", "-") else [x.encode() for x in a.split(",")])
        elif op == "lclear":
            self.l.clear(e)
        elif op == "timer":
            e.register_timer(int(a))
        elif op == "untimer":
            e.delete_timer(int(a))
        elif op == "ptimer":
            e.register_timer(int(a), PROCESSING)
        elif op == "unptimer":
            e.delete_timer(int(a), PROCESSING)
        elif op == "wm":
            return f"wm={e.current_watermark()}"
        elif op == "now":
            return f"now={wit_timers.processing_time()}"
        elif op == "onfire":
            self.script.append(e, cmd.split(" ", 1)[1].encode())
        else:
            raise sluice.OperatorError("invalid-input", f"unknown command '{op}'")
        return "ok"

    def process(self, event, out):
        try:
            result = self.run(event.value.decode(), event)
        except sluice.OperatorError as err:
            if err.code != "state":
                raise
            result = f"err {err.message}"
        out.emit(event.timestamp, event.key, result.encode())

    def on_timer(self, timer, out):
        d = "e" if timer.domain == EVENT else "p"
        line = f"fired {d} {timer.time} wm={timer.current_watermark()}"
        script = self.script.get(timer)
        if script:
            action = script.pop(0).decode()
            self.script.set(timer, script)
            verb, _, arg = action.partition(" ")
            if verb == "reg":
                timer.register_timer(int(arg))
                r = "ok"
            elif verb == "preg":
                timer.register_timer(int(arg), PROCESSING)
                r = "ok"
            elif verb == "del":
                timer.delete_timer(int(arg))
                r = "ok"
            elif verb == "vset":
                self.v.set(timer, arg.encode())
                r = "ok"
            else:
                r = f"unknown action '{verb}'"
            line += f" {action}: {r}"
        out.emit(timer.time, timer.key, line.encode())


Operator = sluice.export(TestState)
