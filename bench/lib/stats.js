/** Summary statistics over a list of milliseconds. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

export const median = (values) => percentile(values, 50);

export function formatMs(ms) {
  if (!Number.isFinite(ms)) return "n/a";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function formatRate(perSecond, unit = "/s") {
  if (!Number.isFinite(perSecond)) return "n/a";
  if (perSecond >= 100_000) return `${(perSecond / 1000).toFixed(0)}k${unit}`;
  if (perSecond >= 10_000) return `${(perSecond / 1000).toFixed(1)}k${unit}`;
  return `${perSecond.toFixed(0)}${unit}`;
}

export function formatMB(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
