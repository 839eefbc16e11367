import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createHttpEvaluator, createOpenAiEvaluator, withAnswerCache, type ModelEvaluator, type ModelRequest } from "../../src/risk/modelEvaluators.js";
import { compilePolicy, type PolicyRule } from "../../src/risk/policy.js";
import { createRiskEvaluator } from "../../src/risk/assess.js";

interface Seen {
  body: unknown;
  headers: IncomingMessage["headers"];
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen, index: number) => void;

const servers: { close: () => void }[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/** A real HTTP server on 127.0.0.1, port 0, recording every request it gets. */
async function serve(handler: Handler): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let text = "";
    req.on("data", (chunk) => (text += chunk));
    req.on("end", () => {
      const entry = { body: text ? JSON.parse(text) : undefined, headers: req.headers };
      seen.push(entry);
      handler(req, res, entry, seen.length - 1);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push({
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const json = (status: number, body: unknown) => (_req: IncomingMessage, res: ServerResponse) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
};

const GOOD = { risk_score: 42, classification: "medium", action: "review", rationale: "moves money" };
const REQUEST: ModelRequest = { tool: "transfer", arguments: { amount: 5 }, context: { upstream: "bank" } };
const fast = { timeout: 2_000, retries: 2, headers: {} };

describe("http evaluator (the seed's contract)", () => {
  it("POSTs {tool, arguments, context} and reads {risk_score, classification, action, rationale}", async () => {
    const { url, seen } = await serve(json(200, GOOD));
    const answer = await createHttpEvaluator({ url: `${url}/score`, ...fast, headers: { "modal-key": "k" } }).evaluate(REQUEST);
    expect(answer).toEqual({ score: 42, classification: "medium", action: "review", rationale: "moves money" });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.body).toEqual(REQUEST);
    expect(seen[0]!.headers["modal-key"]).toBe("k");
  });

  const failures: [string, Handler, string, number][] = [
    ["slow (timeout)", (_req, res) => void setTimeout(() => json(200, GOOD)(_req, res), 3_000).unref(), "timeout: no answer within 300 ms", 1],
    ["HTTP 500, retried then given up", json(500, { error: "boom" }), "HTTP 500 after 3 attempts", 3],
    ["HTTP 400, not retried", json(400, { error: "bad" }), "HTTP 400", 1],
    ["malformed JSON", json(200, "{risk_score: 12"), "malformed answer: the response is not JSON", 1],
    ["not an object", json(200, [1, 2]), "malformed answer: expected a JSON object", 1],
    ["risk_score missing", json(200, { classification: "low" }), "malformed answer: risk_score is missing", 1],
    ["risk_score a string", json(200, { risk_score: "12" }), 'malformed answer: risk_score is not a number ("12")', 1],
    ["risk_score above 100", json(200, { ...GOOD, risk_score: 150 }), "out-of-range answer: risk_score 150 is outside 0-100", 1],
    ["risk_score below 0", json(200, { ...GOOD, risk_score: -1 }), "out-of-range answer: risk_score -1 is outside 0-100", 1],
    ["rationale not a string", json(200, { ...GOOD, rationale: 5 }), "malformed answer: rationale is not a string", 1],
  ];
  it.each(failures)("%s: throws a named failure", async (_label, handler, message, requests) => {
    const { url, seen } = await serve(handler);
    const evaluator = createHttpEvaluator({ url, timeout: message.startsWith("timeout") ? 300 : 2_000, retries: 2, headers: {} });
    await expect(evaluator.evaluate(REQUEST)).rejects.toThrow(message);
    expect(seen).toHaveLength(requests);
  });

  it("retries a 503 and uses the answer that follows (bounded retries)", async () => {
    const { url, seen } = await serve((req, res, _seen, index) => (index === 0 ? json(503, {}) : json(200, GOOD))(req, res));
    expect((await createHttpEvaluator({ url, ...fast }).evaluate(REQUEST)).score).toBe(42);
    expect(seen).toHaveLength(2);
  });

  it("names an unreachable evaluator", async () => {
    const { url } = await serve(json(200, GOOD));
    servers.splice(0).forEach((server) => server.close());
    await new Promise((resolve) => setTimeout(resolve, 50));
    await expect(createHttpEvaluator({ url, timeout: 2_000, retries: 1, headers: {} }).evaluate(REQUEST)).rejects.toThrow(/cannot reach the evaluator \(ECONNREFUSED\) after 2 attempts/);
  });
});

describe("openai evaluator (chat completions)", () => {
  const completion = (content: unknown, extra: Record<string, unknown> = {}) => ({ choices: [{ message: { role: "assistant", content, ...extra } }] });

  it("sends a JSON-schema response_format and the EU AI Act oversight prompt; reads the answer from the message", async () => {
    const { url, seen } = await serve(json(200, completion(JSON.stringify(GOOD))));
    const evaluator = createOpenAiEvaluator({ baseUrl: `${url}/v1/`, model: "tiny", apiKey: "sk-test-key-123", ...fast });
    expect(evaluator.name).toBe("openai:tiny");
    expect(await evaluator.evaluate(REQUEST)).toMatchObject({ score: 42, action: "review" });
    const body = seen[0]!.body as { model: string; messages: { role: string; content: string }[]; response_format: { type: string; json_schema: { strict: boolean; schema: { required: string[] } } } };
    expect(seen[0]!.headers.authorization).toBe("Bearer sk-test-key-123");
    expect(body.model).toBe("tiny");
    expect(body.response_format.type).toBe("json_schema");
    expect(body.response_format.json_schema.strict).toBe(true);
    expect(body.response_format.json_schema.schema.required).toEqual(["risk_score", "classification", "action", "rationale"]);
    expect(body.messages[0]!.role).toBe("system");
    expect(body.messages[0]!.content).toContain("EU AI Act");
    expect(body.messages[0]!.content).toContain("human-oversight");
    expect(JSON.parse(body.messages[1]!.content)).toEqual(REQUEST);
  });

  it("accepts an answer wrapped in a code fence", async () => {
    const { url } = await serve(json(200, completion("```json\n" + JSON.stringify(GOOD) + "\n```")));
    expect((await createOpenAiEvaluator({ baseUrl: url, model: "m", ...fast }).evaluate(REQUEST)).score).toBe(42);
  });

  const failures: [string, unknown, string][] = [
    ["content not JSON", completion("I think it is fine"), "malformed answer: the model's message is not JSON"],
    ["out-of-range score", completion(JSON.stringify({ ...GOOD, risk_score: 0.5e3 })), "out-of-range answer: risk_score 500"],
    ["no choices", { id: "x" }, "malformed answer: no choices[0].message"],
    ["no text content", completion(null), "malformed answer: the completion has no text content"],
    ["refusal", completion(null, { refusal: "I cannot help with that" }), "the model refused: I cannot help with that"],
  ];
  it.each(failures)("%s: throws a named failure", async (_label, body, message) => {
    const { url } = await serve(json(200, body));
    await expect(createOpenAiEvaluator({ baseUrl: url, model: "m", ...fast }).evaluate(REQUEST)).rejects.toThrow(message);
  });
});

describe("answer cache", () => {
  it("reuses an answer for an identical call within the TTL, and asks again after it", async () => {
    const { url, seen } = await serve(json(200, GOOD));
    let now = 1_000;
    const evaluator = withAnswerCache(createHttpEvaluator({ url, ...fast }), 60_000, () => now);
    await Promise.all([evaluator.evaluate(REQUEST), evaluator.evaluate(structuredClone(REQUEST))]);
    expect(seen).toHaveLength(1); // concurrent identical calls share one request
    now += 59_000;
    await evaluator.evaluate(REQUEST);
    expect(seen).toHaveLength(1);
    await evaluator.evaluate({ ...REQUEST, arguments: { amount: 6 } });
    expect(seen).toHaveLength(2);
    now += 2_000;
    await evaluator.evaluate(REQUEST);
    expect(seen).toHaveLength(3);
  });

  it("does not cache failures", async () => {
    const { url, seen } = await serve((req, res, _seen, index) => (index === 0 ? json(200, "nope") : json(200, GOOD))(req, res));
    const evaluator = withAnswerCache(createHttpEvaluator({ url, ...fast }), 60_000);
    await expect(evaluator.evaluate(REQUEST)).rejects.toThrow("malformed");
    expect((await evaluator.evaluate(REQUEST)).score).toBe(42);
    expect(seen).toHaveLength(2);
  });
});

describe("models in the risk evaluator", () => {
  const input = { upstream: "bank", tool: "transfer", name: "transfer", args: { amount: 5, api_key: "sk-live-abcdefghijklmnop" }, annotations: { readOnlyHint: true } };
  const evaluatorWith = (models: ModelEvaluator[], rules: PolicyRule[] = []) => createRiskEvaluator({ policy: compilePolicy({ rules }), models, threshold: 70 });

  it("takes the maximum of the rules' score and every model's score", async () => {
    const low = await serve(json(200, { ...GOOD, risk_score: 20 }));
    const high = await serve(json(200, { ...GOOD, risk_score: 77 }));
    const assessment = await evaluatorWith([createHttpEvaluator({ url: low.url, name: "low", ...fast }), createHttpEvaluator({ url: high.url, name: "high", ...fast })])(input);
    expect(assessment.score).toBe(77);
    expect(assessment.evaluator).toBe("rules+low+high");
    expect(assessment.reasons).toContain("model high: 77 (medium, action review): moves money");
  });

  it("sends masked arguments and the call's context", async () => {
    const { url, seen } = await serve(json(200, GOOD));
    await evaluatorWith([createHttpEvaluator({ url, ...fast })])({ ...input, description: "Send money" });
    expect(seen[0]!.body).toMatchObject({
      tool: "transfer",
      arguments: { amount: 5, api_key: "[masked]" },
      context: { upstream: "bank", description: "Send money", annotations: { readOnlyHint: true }, rules_score: 10, threshold: 70 },
    });
  });

  it("never sends a canary secret hidden in text, a URL or embedded JSON to the model", async () => {
    const { url, seen } = await serve(json(200, GOOD));
    const args = {
      note: "login with password: canary-pass-1 please",
      dsn: "postgres://svc:canary-pass-2@db/x",
      body: JSON.stringify({ headers: { Authorization: "Bearer canary-token-3abc" } }),
      iban: "FR7630006000011234567890189",
    };
    await evaluatorWith([createHttpEvaluator({ url, ...fast })])({ ...input, args });
    const sent = JSON.stringify(seen[0]!.body);
    for (const canary of ["canary-pass-1", "canary-pass-2", "canary-token-3abc"]) expect(sent).not.toContain(canary);
    expect(sent).toContain("FR7630006000011234567890189");
  });

  const failing: [string, Handler][] = [
    ["timeout", (_req, res) => void setTimeout(() => json(200, GOOD)(_req, res), 3_000).unref()],
    ["HTTP 500", json(500, {})],
    ["malformed JSON", json(200, "<html>")],
    ["out-of-range score", json(200, { ...GOOD, risk_score: 101 })],
  ];
  it.each(failing)("%s fails closed: score 100, held, the reason names the failure", async (_label, handler) => {
    const { url } = await serve(handler);
    const model = createOpenAiEvaluator({ baseUrl: url, model: "m", apiKey: "sk-very-secret-key", timeout: 300, retries: 1, headers: {} });
    const assessment = await evaluatorWith([model])(input);
    expect(assessment.score).toBe(100);
    expect(assessment.classification).toBe("critical");
    const reason = assessment.reasons.find((line) => line.startsWith("model openai:m failed, held for review (fail closed): "));
    expect(reason).toMatch(/timeout|HTTP 500|malformed|out-of-range/);
    expect(JSON.stringify(assessment)).not.toContain("sk-very-secret-key");
  });

  it("allow and deny rules short-circuit: no model is asked", async () => {
    const { url, seen } = await serve(json(200, GOOD));
    const models = [createHttpEvaluator({ url, ...fast })];
    expect((await evaluatorWith(models, [{ tool: "transfer", effect: "allow" }])(input)).verdict).toBe("allow");
    expect((await evaluatorWith(models, [{ tool: "transfer", effect: "deny" }])(input)).verdict).toBe("deny");
    expect(seen).toHaveLength(0);
    const review = await evaluatorWith(models, [{ tool: "transfer", effect: "review" }])(input);
    expect(review).toMatchObject({ verdict: "review", score: 42 });
    expect(seen).toHaveLength(1);
  });
});
