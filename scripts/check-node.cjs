// `npm test`, `npm run build` and `npm run demo` run this first (pre-scripts): on a Node older than package.json's
// engines, one plain line instead of hundreds of failures (issue 13). Kept to syntax every Node can parse.
var major = Number(process.versions.node.split(".")[0]);
if (major < 22) {
  process.stderr.write(
    "atlas-gateway needs Node.js 22 or newer, but this is Node " + process.version + ": install Node 22+ (https://nodejs.org) and run this again.\n"
  );
  process.exit(1);
}
