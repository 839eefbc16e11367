import { benchRules } from "./rules.js";

const us = (value) => `${value < 10 ? value.toFixed(2) : value.toFixed(1)} µs`;

/** 6. Risk policy: cost per call of 1,000 rules (bench/rules.js) against an empty policy, in the same run. */
export async function benchPolicy(ctx) {
  const rows = benchRules({ smoke: ctx.smoke });
  const baseline = rows[0][1];
  ctx.log(`risk policy: ${rows.map(([label, value]) => `${label} ${us(value)}`).join("; ")}`);
  return rows.slice(1).map(([label, value]) => ({
    section: "6 risk policy",
    measure: label.replace(/ \(.*$/, ""),
    value: `${us(value)}/call`,
    baseline: `${us(baseline)} empty policy`,
    ratio: value / baseline,
    target: "info",
  }));
}
