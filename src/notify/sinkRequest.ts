import { Webhook } from "standardwebhooks";
import type { NotifySinkConfig } from "../config.js";
import { timeLeft, type NotificationEvent } from "./notificationEvent.js";

/** One HTTP request to a sink, ready to send. */
export interface SinkRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * The webhook sink's request: the Standard Webhooks payload shape (`type`, `timestamp`, `data`), signed `v1` with the
 * sink's `whsec_` secret over `id.timestamp.body`; `webhook-id` is the notification id, the same on every retry.
 */
export function webhookRequest(sink: Extract<NotifySinkConfig, { type: "webhook" }>, event: NotificationEvent, now: Date): SinkRequest {
  const body = JSON.stringify({ type: `atlas.${event.type}`, timestamp: event.at, data: event });
  return {
    url: sink.url,
    headers: {
      "content-type": "application/json",
      "webhook-id": event.id,
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": new Webhook(sink.secret).sign(event.id, now, body),
    },
    body,
  };
}

const SLACK_TEXT_LIMIT = 2900; // a section's text may hold 3,000 characters

function clip(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit - 1)}…`;
}

/** Slack mrkdwn treats these three as markup; everything the agent or a reviewer wrote is escaped. */
function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * Text shown inside Slack code (`` `…` `` or a ``` block): escaped, and every backtick followed by a zero-width space,
 * so no run of backticks in the agent's arguments can close the code early and turn the rest into its own markup.
 */
function code(text: string): string {
  return escape(text).replace(/`/g, "`\u200b");
}

/**
 * A Slack incoming-webhook message in Block Kit: what happened, the tool, score, reasons, masked arguments and time
 * left, and a button that opens the call on the review page when `publicUrl` is set.
 */
export function slackMessage(event: NotificationEvent, now: Date): Record<string, unknown> {
  const blocks: Record<string, unknown>[] = [
    { type: "header", text: { type: "plain_text", text: clip(event.summary, 150), emoji: true } },
  ];
  const call = event.call;
  if (call) {
    const left = call.status === "pending" ? timeLeft(call.deadline, now) : undefined;
    blocks.push({
      type: "section",
      fields: [
        { type: "mrkdwn", text: `*Tool*\n\`${code(call.tool)}\` (upstream \`${code(call.upstream)}\`)` },
        { type: "mrkdwn", text: `*Risk*\n${call.score ?? "?"}${call.classification ? ` (${call.classification})` : ""}` },
        { type: "mrkdwn", text: `*Ref*\n\`${call.ref}\`` },
        { type: "mrkdwn", text: `*Status*\n${call.status}${left ? `, ${left} left` : ""}${call.approvals ? ` · ${call.approvals.count} of ${call.approvals.required} approvals` : ""}` },
      ],
    });
    if (call.reasons.length) {
      blocks.push({ type: "section", text: { type: "mrkdwn", text: clip(`*Reasons*\n${call.reasons.map((reason) => `• ${escape(reason)}`).join("\n")}`, SLACK_TEXT_LIMIT) } });
    }
    blocks.push({ type: "section", text: { type: "mrkdwn", text: `*Arguments* (secrets masked)\n\`\`\`${clip(code(JSON.stringify(call.args, null, 2)), SLACK_TEXT_LIMIT - 40)}\`\`\`` } });
  }
  if (event.halt?.reason) blocks.push({ type: "section", text: { type: "mrkdwn", text: clip(`*Reason*\n${escape(event.halt.reason)}`, SLACK_TEXT_LIMIT) } });
  if (event.reviewUrl) {
    blocks.push({
      type: "actions",
      elements: [{ type: "button", text: { type: "plain_text", text: call ? "Open in review page" : "Open review page" }, url: event.reviewUrl, ...(event.type === "call.held" ? { style: "primary" } : {}) }],
    });
  }
  blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: `atlas-gateway · instance \`${code(event.instance)}\` · ${event.at}` }] });
  // the fallback text (push notifications, screen readers) is mrkdwn too: a reason naming <!channel> must not ping
  return { text: escape(event.summary), blocks };
}

/** The request for any sink. */
export function sinkRequest(sink: NotifySinkConfig, event: NotificationEvent, now: Date): SinkRequest {
  if (sink.type === "webhook") return webhookRequest(sink, event, now);
  return { url: sink.url, headers: { "content-type": "application/json" }, body: JSON.stringify(slackMessage(event, now)) };
}

/** How a sink appears in the ledger and logs: its type, position and host — never its URL path (a Slack webhook URL is a secret). */
export function describeSink(sink: NotifySinkConfig, index: number): { sink: number; sink_type: string; host: string } {
  let host = "?";
  try {
    host = new URL(sink.url).host;
  } catch {
    // validated by the config schema
  }
  return { sink: index, sink_type: sink.type, host };
}
