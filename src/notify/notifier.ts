import { setTimeout as sleep } from "node:timers/promises";
import type { NotifySinkConfig } from "../config.js";
import type { NotificationEvent } from "./notificationEvent.js";
import { describeSink, sinkRequest } from "./sinkRequest.js";

/** Retries: attempt 1 at once, then after `baseMs`, doubling up to `maxMs`, `attempts` in all. */
export interface RetryPolicy {
  attempts: number;
  baseMs: number;
  maxMs: number;
}

/** Five attempts over about 15 s: long enough for a receiver's restart, short enough to still be news. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 1000, maxMs: 8000 };
/** One attempt may take this long before it counts as failed (a receiver that accepts and never answers). */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 5000;

/** The outcome of one delivery attempt, as recorded in the ledger (`notification.sent` / `notification.failed`). */
export interface AttemptOutcome {
  type: "notification.sent" | "notification.failed";
  ref?: string;
  data: Record<string, unknown>;
}

export interface NotifierOptions {
  sinks: NotifySinkConfig[];
  /** Records each attempt's outcome (the ledger); a failure here is logged, never thrown at a tool call. */
  record: (outcome: AttemptOutcome) => Promise<void> | void;
  log: (line: string) => void;
  fetch?: typeof fetch;
  now?: () => Date;
  retry?: RetryPolicy;
  attemptTimeoutMs?: number;
}

/**
 * Delivers notifications to every configured sink in the background. `notify` returns at once: delivery never
 * delays or fails a tool call. Each attempt's outcome becomes a ledger record, so "the reviewer was told at 10:02" is
 * provable; a failed attempt is retried with exponential backoff, a bounded number of times.
 */
export class Notifier {
  private readonly options: NotifierOptions;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stop = new AbortController();

  constructor(options: NotifierOptions) {
    this.options = options;
  }

  get enabled(): boolean {
    return this.options.sinks.length > 0;
  }

  /** Starts delivering `event` to every sink; returns without waiting. */
  notify(event: NotificationEvent): void {
    if (this.stop.signal.aborted) return;
    this.options.sinks.forEach((sink, index) => {
      const delivery = this.deliver(sink, index, event).then(() => undefined, (error: Error) => this.options.log(`notify: ${error.message}`));
      this.inFlight.add(delivery);
      void delivery.finally(() => this.inFlight.delete(delivery));
    });
  }

  /** Delivers `event` to every sink and resolves with each sink's final outcome (`doctor --notify-test`). */
  async deliverNow(event: NotificationEvent): Promise<{ sink: string; ok: boolean; detail: string }[]> {
    return Promise.all(this.options.sinks.map(async (sink, index) => {
      const outcome = await this.deliver(sink, index, event);
      const where = describeSink(sink, index);
      return { sink: `notify[${index}] ${where.sink_type} ${where.host}`, ok: outcome.type === "notification.sent", detail: String(outcome.data.status ?? outcome.data.error ?? "") };
    }));
  }

  /** Resolves once every delivery started so far has finished (sent, or failed for good). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Stops retrying and abandons attempts in flight (at shutdown, before the ledger closes). */
  close(): void {
    this.stop.abort();
  }

  private async deliver(sink: NotifySinkConfig, index: number, event: NotificationEvent): Promise<AttemptOutcome> {
    const retry = this.options.retry ?? DEFAULT_RETRY;
    const now = this.options.now ?? (() => new Date());
    const send = this.options.fetch ?? fetch;
    const where = describeSink(sink, index);
    let delay = retry.baseMs;
    let outcome: AttemptOutcome | undefined;
    for (let attempt = 1; attempt <= retry.attempts && !this.stop.signal.aborted; attempt++) {
      const base = { notification_id: event.id, event: event.type, ...where, attempt };
      const started = performance.now();
      try {
        const request = sinkRequest(sink, event, now());
        const response = await send(request.url, {
          method: "POST",
          headers: request.headers,
          body: request.body,
          redirect: "error",
          signal: AbortSignal.any([AbortSignal.timeout(this.options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS), this.stop.signal]),
        });
        await response.body?.cancel().catch(() => {});
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        outcome = { type: "notification.sent", ...(event.ref ? { ref: event.ref } : {}), data: { ...base, status: response.status, ms: Math.round(performance.now() - started) } };
        await this.recordOutcome(outcome);
        return outcome;
      } catch (error) {
        const final = attempt === retry.attempts || this.stop.signal.aborted;
        const message = (error as Error).name === "TimeoutError" ? `no answer within ${this.options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS} ms` : (error as Error).message;
        outcome = { type: "notification.failed", ...(event.ref ? { ref: event.ref } : {}), data: { ...base, error: message, final, ...(final ? {} : { retry_in_ms: delay }) } };
        if (!this.stop.signal.aborted) await this.recordOutcome(outcome);
        if (final) {
          this.options.log(`notify: ${event.type}${event.ref ? ` ${event.ref}` : ""} to ${where.sink_type} ${where.host} failed after ${attempt} attempt(s): ${message}`);
          return outcome;
        }
        try {
          await sleep(delay, undefined, { signal: this.stop.signal });
        } catch {
          break; // closing
        }
        delay = Math.min(delay * 2, retry.maxMs);
      }
    }
    return outcome ?? { type: "notification.failed", data: { notification_id: event.id, event: event.type, ...where, error: "the gateway shut down before delivery", final: true } };
  }

  private async recordOutcome(outcome: AttemptOutcome): Promise<void> {
    try {
      await this.options.record(outcome);
    } catch (error) {
      this.options.log(`notify: could not record ${outcome.type}: ${(error as Error).message}`);
    }
  }
}
