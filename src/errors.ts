/**
 * The few error classes the gateway throws on purpose. Each carries the exit code the CLI uses;
 * anything else reaching the CLI's single catch is a bug and exits 1 with its message.
 */
export class AtlasError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** Invalid configuration or usage: one line per problem, exit 2. */
export class ConfigError extends AtlasError {
  readonly problems: string[];
  /** What to do about it, when the cause is known (a missing file, a JSON syntax error); `doctor` prints it. */
  readonly fix: string | undefined;
  constructor(problems: string[], fix?: string) {
    super(problems.join("\n"), 2);
    this.problems = problems;
    this.fix = fix;
  }
}

/** A ref that no ledger in the data dir holds: exit 4. */
export class NotFoundError extends AtlasError {
  constructor(message: string) {
    super(message, 4);
  }
}

/** A decision on a ref that is no longer pending: nothing changed, exit 3. */
export class ConflictError extends AtlasError {
  constructor(message: string) {
    super(message, 3);
  }
}

/** The ledger could not be read, written or verified: the gateway fails closed. */
export class LedgerError extends AtlasError {
  constructor(message: string) {
    super(message, 5);
  }
}

/**
 * An upstream call that was sent but whose outcome the gateway cannot know: it timed out, the upstream exited or the
 * connection closed, or the call was cancelled mid-way. The effect may have happened, so it is recorded as `unknown`
 * and never re-run (issue 10, at most once); an error the upstream itself answered is a plain error.
 */
export class UncertainOutcomeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UncertainOutcomeError";
  }
}
