import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Decision } from "../governance/engine.js";
import type { RequestView } from "../governance/requests.js";
import { describeHalt, type HaltFact } from "../governance/haltState.js";

/** The line a held call answers with: the original system's wording, which agents and prompts already know. */
export function pendingText(ref: string): string {
  return `PENDING REVIEW (Ref: ${ref}). Action queued subject to governance checks.`;
}

/**
 * Turns a routing decision into the agent's result. Allowed calls return the upstream result unchanged. A held
 * call on a tool that declares an `outputSchema` is answered with `isError: true` and no structured content: a
 * client that validates structured output against that schema would otherwise reject the pending notice.
 */
export function decisionToResult(decision: Decision, options: { hasOutputSchema?: boolean } = {}): CallToolResult {
  switch (decision.kind) {
    case "allow":
      return decision.result;
    case "hold": {
      const view = decision.view;
      const guidance = `Risk ${view.assessment?.score ?? "?"}/100 (${view.assessment?.classification ?? "unassessed"}): ${(view.assessment?.reasons ?? []).join("; ")}. ` +
        `A human reviewer must approve it before it runs. Call atlas_status with {"ref": "${decision.ref}", "wait_seconds": 45} to wait for the decision and get the result.`;
      const content: CallToolResult["content"] = [
        { type: "text", text: pendingText(decision.ref) },
        { type: "text", text: guidance },
      ];
      if (options.hasOutputSchema) return { content, isError: true, _meta: { "atlas/ref": decision.ref, "atlas/status": "pending" } };
      return {
        content,
        structuredContent: { status: "pending_review", ref: decision.ref, score: view.assessment?.score, deadline: view.deadline },
        _meta: { "atlas/ref": decision.ref, "atlas/status": "pending" },
      };
    }
    case "deny":
      if (decision.halted) return { content: [{ type: "text", text: decision.reason }], isError: true };
      return { content: [{ type: "text", text: `DENIED${decision.ref ? ` (Ref: ${decision.ref})` : ""}: ${decision.reason}` }], isError: true };
  }
}

/** Approve with edits: the agent must learn that what ran is not what it asked for (issue 9). */
function editedNote(view: RequestView): string {
  return view.editedArgs ? `The reviewer CHANGED YOUR ARGUMENTS before approving; it ran with ${JSON.stringify(view.editedArgs)} instead of ${JSON.stringify(view.args)}. ` : "";
}

function decidedBy(view: RequestView): string {
  const decision = view.decision;
  if (!decision) return view.autoApproved ? "auto-approved by policy" : "";
  if (decision.source === "timeout") return `expired without a decision: ${decision.reason ?? ""}`.trim();
  return `${decision.decision} by ${decision.reviewer ?? "a reviewer"}${decision.reason ? ` (reason: ${decision.reason})` : ""}`;
}

/**
 * `atlas_status`'s answer: the state, who decided and why, and the tool's real result once it ran. While the gateway
 * is halted (`halt`), an open call's answer says so: it will not start until a reviewer resumes the gateway.
 */
export function statusToResult(view: RequestView, halt?: HaltFact): CallToolResult {
  const result = statusResult(view);
  if (!halt || (view.status !== "pending" && view.status !== "approved")) return result;
  const note = `The gateway is HALTED: ${describeHalt(halt)}. Nothing starts until a reviewer runs 'atlas-gateway resume'; pending calls stay pending and their deadlines keep running.`;
  return {
    ...result,
    content: [...result.content, { type: "text", text: note }],
    ...(result.structuredContent ? { structuredContent: { ...result.structuredContent, halted: { by: halt.by, at: halt.at, ...(halt.reason ? { reason: halt.reason } : {}) } } } : {}),
  };
}

function statusResult(view: RequestView): CallToolResult {
  const who = decidedBy(view);
  const summary: Record<string, unknown> = {
    ref: view.ref,
    status: view.status,
    tool: view.name,
    score: view.assessment?.score,
    ...(view.deadline ? { deadline: view.deadline } : {}),
    ...(view.decision ? { decision: view.decision } : {}),
    ...(view.outcome ? { outcome: view.outcome } : {}),
    ...(view.editedArgs ? { arguments_changed: true, original_arguments: view.args, arguments: view.editedArgs } : {}),
  };
  const line = (text: string): CallToolResult["content"][number] => ({ type: "text", text });
  if (view.problem && (view.status === "pending" || view.status === "approved")) {
    // Still open, but the engine cannot carry it as things stand: say why, and what will happen.
    const { problem, ...rest } = view;
    const status = statusToResult(rest);
    const content = view.status === "approved" ? [line(`Ref ${view.ref}: APPROVED (${who}), but not running. Warning: ${problem.cause}`)] : [...status.content, line(`Warning: ${problem.cause}`)];
    return { ...status, content, structuredContent: { ...status.structuredContent, problem } };
  }
  switch (view.status) {
    case "executed": {
      const result = (view.result ?? { content: [] }) as CallToolResult;
      return {
        content: [line(`Ref ${view.ref}: EXECUTED (${who}). ${editedNote(view)}The tool's result follows.`), ...(result.content ?? [])],
        structuredContent: { ...summary, result },
        ...(result.isError ? { isError: true } : {}),
      };
    }
    case "denied":
      return { content: [line(`Ref ${view.ref}: DENIED (${who}). The action was not performed.`)], structuredContent: summary, isError: true };
    case "expired":
      return { content: [line(`Ref ${view.ref}: EXPIRED (${who}). The action was not performed.`)], structuredContent: summary, isError: true };
    case "unknown":
      return {
        content: [line(`Ref ${view.ref}: OUTCOME UNKNOWN. The action was interrupted while running (the gateway stopped, or the upstream timed out, exited or the call was cancelled); it may or may not have taken effect and will not be re-run. A human should check the target system.`)],
        structuredContent: summary,
        isError: true,
      };
    case "abandoned":
      return { content: [line(`Ref ${view.ref}: ABANDONED: ${view.abandonedReason ?? "the gateway stopped before this call was routed; it was never run"}. Call the tool again if it is still needed.`)], structuredContent: summary, isError: true };
    case "pending":
      return { content: [line(`Ref ${view.ref}: PENDING REVIEW. Waiting for a human decision (deadline ${view.deadline}). Call atlas_status again to keep waiting.`)], structuredContent: summary };
    default:
      return { content: [line(`Ref ${view.ref}: ${view.status.toUpperCase()} (${who}). ${editedNote(view)}Running now; call atlas_status again for the result.`)], structuredContent: summary };
  }
}
