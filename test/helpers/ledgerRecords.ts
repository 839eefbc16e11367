import { instancePaths } from "../../src/dataDir.js";
import { scanLedger, type LedgerRecord } from "../../src/ledger/ledger.js";

/**
 * Every intact record of one instance's ledger, in seq order, read across all its segments (ledger v2, issue 12:
 * a directory of segment files, not one `.jsonl`). Tests read the ledger through this rather than a file path so
 * they follow the layout the gateway actually writes.
 */
export function ledgerRecords(dataDir: string, instance = "main"): LedgerRecord[] {
  return scanLedger(instancePaths(dataDir, instance).ledger).records;
}
