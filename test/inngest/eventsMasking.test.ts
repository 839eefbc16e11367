import { describe, expect, it } from "vitest";
import { requestEvent } from "../../src/inngest/events.js";
import { heldCall, openEngine, recordingExecutor, tempDir } from "../helpers.js";

describe("Inngest request events", () => {
  it("carry masked arguments and reasons: no canary secret leaves the machine", async () => {
    const engine = openEngine(tempDir("atlas-events-"), recordingExecutor());
    const held = await engine.submit(heldCall({ path: "/tmp/x", note: "PASSWORD=canary-events-1", auth: "Bearer canary-events-2xyz", api_key: "canary-events-3" }));
    const view = engine.get(held.ref!)!;
    await engine.close();
    const event = JSON.stringify(requestEvent("app", "main", view));
    for (const canary of ["canary-events-1", "canary-events-2xyz", "canary-events-3"]) expect(event).not.toContain(canary);
    expect(event).toContain("/tmp/x");
  });
});
