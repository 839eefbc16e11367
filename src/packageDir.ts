import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The installed package's root (holding `bin/`, `dist/`, `package.json`): what runs the gateway's CLI. Found by
 * walking up from this module, so it is the same whether the code runs bundled (`dist/*.js`) or from the sources
 * (`src/**`, under tests), whatever the folder depth.
 */
export const PACKAGE_DIR = findPackageDir(dirname(fileURLToPath(import.meta.url)));

function findPackageDir(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) return dirname(start);
  }
}
