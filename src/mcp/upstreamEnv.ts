/** Variables that configure or authenticate the gateway itself: never an upstream's business (issue 10). */
const GATEWAY_VARIABLE = /^(ATLAS_|INNGEST_)/;

/**
 * The environment a stdio upstream starts with: the gateway's own (an upstream usually needs PATH, HOME, proxies,
 * its tokens) minus the gateway's settings and secrets — `ATLAS_*`, `INNGEST_*`, and any variable whose value is a
 * secret the gateway uses (an evaluator's API key or header, passed as `secretValues`) — plus the upstream's own
 * `env`, which wins: naming a variable there hands it over deliberately.
 */
export function upstreamEnv(gatewayEnv: NodeJS.ProcessEnv, own: Record<string, string> = {}, secretValues: readonly string[] = []): NodeJS.ProcessEnv {
  const secrets = new Set(secretValues.filter((value) => value.length >= 8));
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(gatewayEnv)) {
    if (value === undefined || GATEWAY_VARIABLE.test(name) || secrets.has(value)) continue;
    env[name] = value;
  }
  return { ...env, ...own };
}
