import type { GovernanceLog } from "./governanceLog.js";
import type { RequestView } from "./requests.js";

const MAX_TIMER_MS = 2_147_483_647;

/**
 * Expires held calls whose review deadline passed without a decision (expiry counts as a denial). One timer per
 * pending ref, re-armed when the deadline lies beyond what setTimeout can wait. `graceMs` lets another party (an
 * Inngest run's own timeout) decide first; the timer is then only a backstop.
 */
export class DeadlineTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly log: GovernanceLog,
    private readonly now: () => Date,
    private readonly report: (line: string) => void,
    private readonly graceMs = 0,
  ) {}

  schedule(view: RequestView): void {
    if (this.closed || !view.deadline) return;
    this.clear(view.ref);
    const due = Date.parse(view.deadline) + this.graceMs;
    const timer = setTimeout(() => {
      this.timers.delete(view.ref);
      const current = this.log.table.get(view.ref);
      if (!current || current.status !== "pending") return;
      if (Date.parse(current.deadline!) + this.graceMs <= this.now().getTime()) void this.expire(view.ref);
      else this.schedule(current);
    }, Math.min(Math.max(due - this.now().getTime(), 0), MAX_TIMER_MS));
    timer.unref();
    this.timers.set(view.ref, timer);
  }

  clear(ref: string): void {
    clearTimeout(this.timers.get(ref));
    this.timers.delete(ref);
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  private async expire(ref: string): Promise<void> {
    try {
      this.log.expire(ref);
      await this.log.commit();
    } catch (error) {
      this.report(`cannot record the expiry of ${ref}: ${(error as Error).message}`);
    }
  }
}
