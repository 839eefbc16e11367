#!/usr/bin/env node
// Kept to syntax every Node can parse, so an old Node gets a plain message instead of a SyntaxError deep inside.
var major = Number(process.versions.node.split(".")[0]);
if (major < 22) {
  process.stderr.write(
    "atlas-gateway needs Node.js 22 or newer, but this is Node " + process.version + ": install Node 22+ (https://nodejs.org), or run it with npx -y -p node@22 -- npx -y atlas-gateway\n"
  );
  process.exit(1);
}
var command = process.argv[2];
var oneShot = command !== undefined && command !== "serve" && command !== "--" && command.charAt(0) !== "-";
// `atlas-gateway pending | head`: once the reader has gone, the rest of the output has nowhere to go. Drop it and let
// the command finish (an approve still records its decision) instead of dying on EPIPE with a stack trace. For `serve`
// stdout is the MCP channel: its transport sees the same error and treats it as the client going away.
function ignoreClosedReader(error) {
  if (error && (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED")) return;
  throw error;
}
process.stdout.on("error", ignoreClosedReader);
process.stderr.on("error", ignoreClosedReader);
// Node's on-disk compile cache (22.1+): after the first run, starts skip parsing and compiling the bundle (about a
// fifth of a cold start; MCP clients spawn the gateway at every launch). Best effort: on an older Node, or when the
// cache dir is unwritable, the code is compiled as before. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
import("node:module")
  .then(function (nodeModule) {
    try {
      if (typeof nodeModule.enableCompileCache === "function") nodeModule.enableCompileCache();
    } catch (error) {
      // compiling without a cache is fine
    }
  })
  .then(function () {
    return import("../dist/cli.js");
  })
  .then(
  function (cli) {
    return cli.main(process.argv.slice(2)).then(function (code) {
      process.exitCode = code;
      if (oneShot) {
        // one-shot commands: do not wait for stray handles (sockets, timers) to drain
        setImmediate(function () { process.exit(code); });
      } else {
        process.exit(code);
      }
    });
  },
  function (error) {
    process.stderr.write("atlas-gateway: cannot load dist/cli.js (" + error.message + "). If this is a source checkout, run 'npm run build' first.\n");
    process.exit(1);
  }
);
