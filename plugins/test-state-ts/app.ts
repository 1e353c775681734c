// Drives keyed state and timers from commands: the TypeScript twin of plugins/test-state
// and plugins/test-state-py (the same commands and outputs), so that the host's state and
// timer tests run against the JavaScript SDK too. See plugins/test-state-py/app.py for
// the commands.

import * as sluice from "sluice";

const { EVENT_TIME: EVENT, PROCESSING_TIME: PROCESSING } = sluice.TimeDomain;
const dec = new TextDecoder();
const text = (b: Uint8Array | undefined) => (b === undefined ? "none" : dec.decode(b));

class TestState extends sluice.Operator {
  v!: sluice.ValueState;
  t!: sluice.ValueState;
  m!: sluice.MapState;
  l!: sluice.ListState;
  script!: sluice.ListState;

  init(config: sluice.Config): void {
    const ttl = config.int("ttl_ms", 1000);
    this.v = new sluice.ValueState("v");
    this.t = new sluice.ValueState("t", ttl);
    this.m = new sluice.MapState("m");
    this.l = new sluice.ListState("l");
    this.script = new sluice.ListState("script");
  }

  run(cmd: string, e: sluice.Event): string {
    const words = cmd.split(" ");
    const [op, a = "", b = ""] = words;
    switch (op) {
      case "vget": return "v=" + text(this.v.get(e));
      case "vset": this.v.set(e, a); break;
      case "vclear": this.v.clear(e); break;
      case "tget": return "t=" + text(this.t.get(e));
      case "tset": this.t.set(e, a); break;
      case "mget": return "m=" + text(this.m.get(e, a));
      case "mput": this.m.put(e, a, b); break;
      case "mdel": this.m.remove(e, a); break;
      case "mentries":
        return this.m.entries(e).map(([k, v]) => `${dec.decode(k)}=${dec.decode(v)}`).join(",");
      case "mkeys": return this.m.keys(e).map((k) => dec.decode(k)).join(",");
      case "mclear": this.m.clear(e); break;
      case "lget": return this.l.get(e).map((x) => dec.decode(x)).join(",");
      case "lappend": this.l.append(e, a); break;
      case "lset": this.l.set(e, a === "" || a === "-" ? [] : a.split(",")); break;
      case "lclear": this.l.clear(e); break;
      case "timer": e.registerTimer(BigInt(a)); break;
      case "untimer": e.deleteTimer(BigInt(a)); break;
      case "ptimer": e.registerTimer(BigInt(a), PROCESSING); break;
      case "unptimer": e.deleteTimer(BigInt(a), PROCESSING); break;
      case "wm": return `wm=${e.currentWatermark()}`;
      case "now": return `now=${sluice.processingTime()}`;
      case "onfire": this.script.append(e, cmd.slice(cmd.indexOf(" ") + 1)); break;
      default: throw new sluice.OperatorError("invalid-input", `unknown command '${op}'`);
    }
    return "ok";
  }

  process(event: sluice.Event, out: sluice.Emitter): void {
    let result: string;
    try {
      result = this.run(dec.decode(event.value), event);
    } catch (err) {
      if (!(err instanceof sluice.OperatorError) || err.code !== "state") throw err;
      result = `err ${err.message}`;
    }
    out.emit(event.timestamp, event.key, result);
  }

  onTimer(timer: sluice.Timer, out: sluice.Emitter): void {
    const d = timer.domain === EVENT ? "e" : "p";
    let line = `fired ${d} ${timer.time} wm=${timer.currentWatermark()}`;
    const script = this.script.get(timer);
    if (script.length > 0) {
      const action = dec.decode(script.shift()!);
      this.script.set(timer, script);
      const i = action.indexOf(" ");
      const [verb, arg] = i < 0 ? [action, ""] : [action.slice(0, i), action.slice(i + 1)];
      let r = "ok";
      if (verb === "reg") timer.registerTimer(BigInt(arg));
      else if (verb === "preg") timer.registerTimer(BigInt(arg), PROCESSING);
      else if (verb === "del") timer.deleteTimer(BigInt(arg));
      else if (verb === "vset") this.v.set(timer, arg);
      else r = `unknown action '${verb}'`;
      line += ` ${action}: ${r}`;
    }
    out.emit(timer.time, timer.key, line);
  }
}

export const operator = sluice.exportOperator(TestState);
