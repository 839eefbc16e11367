/** The results table: figure, baseline, ratio (or `difference` in ms, for targets in ms), target, PASS/MISS (or "info" for context rows). */
export function formatTable(rows) {
  const header = ["Section", "Measure", "Gateway", "Baseline", "Ratio", "Target", "Result"];
  const cells = rows.map((row) => [
    row.section,
    row.measure,
    row.value,
    row.baseline,
    row.difference !== undefined ? `${row.difference >= 0 ? "+" : "−"}${Math.abs(row.difference).toFixed(1)} ms` : row.ratio === undefined || !Number.isFinite(row.ratio) ? "—" : `${row.ratio.toFixed(2)}x`,
    row.target,
    row.pass === undefined ? "" : row.pass ? "PASS" : "MISS",
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...cells.map((row) => String(row[i]).length)));
  const line = (row) => `| ${row.map((cell, i) => String(cell).padEnd(widths[i])).join(" | ")} |`;
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.map(line)].join("\n");
}
