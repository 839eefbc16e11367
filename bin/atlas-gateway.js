#!/usr/bin/env node
// Kept to syntax every Node can parse, so an old Node gets a plain message instead of a SyntaxError deep inside.
var major = Number(process.versions.node.split(".")[0]);
if (major < 22) {
  process.stderr.write(
    "atlas-gateway needs Node.js 22 or newer, but this is Node " + process.version + ".\n" +
      "Install Node 22+ from https://nodejs.org, or run it with: npx -y -p node@22 -- npx -y atlas-gateway\n"
  );
  process.exit(1);
}
import("../dist/cli.js").then(
  function (cli) {
    return cli.main(process.argv.slice(2)).then(function (code) {
      process.exitCode = code;
      if (process.argv[2] !== undefined && process.argv[2] !== "serve" && process.argv[2] !== "--" && process.argv[2].charAt(0) !== "-") {
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
