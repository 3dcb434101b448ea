// The default logger: one JSON object a line on stderr (stdout is the user's).

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 };

/** A logger with `debug/info/warn/error(message, fields)` and `child(fields)`; `level` filters. */
export function jsonLogger({ level = process.env.TIDEMESH_LOG_LEVEL || "info", fields = {}, write } = {}) {
  const threshold = LEVELS[String(level).toLowerCase()] ?? LEVELS.info;
  const sink = write ?? ((line) => process.stderr.write(line + "\n"));
  const make = (bound) => {
    const emit = (name) => (message, extra = {}) => {
      if (LEVELS[name] < threshold) return;
      sink(JSON.stringify({ ts: new Date().toISOString(), level: name, msg: message, ...bound, ...extra }));
    };
    return {
      debug: emit("debug"),
      info: emit("info"),
      warn: emit("warn"),
      error: emit("error"),
      child: (more) => make({ ...bound, ...more }),
    };
  };
  return make(fields);
}

/** Adapt a user logger (console-like, maybe without `child`) to the SDK's shape. */
export function asLogger(logger) {
  if (!logger) return jsonLogger();
  if (typeof logger.child === "function") return logger;
  const make = (bound) => {
    const emit = (name) => (message, extra = {}) => (logger[name] ?? logger.log).call(logger, message, { ...bound, ...extra });
    return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error"), child: (more) => make({ ...bound, ...more }) };
  };
  return make({});
}
