import { parentPort, workerData } from "node:worker_threads";
import { serveArgumentRequests, WORKER_MARK, type WorkerSelfProtectionOptions } from "./largeArguments.js";

// The worker thread's entry (built as dist/argument-worker.js): serves `ArgumentPreparer`. Loaded anywhere else — the
// main thread, a check of the built files — it does nothing.
const data = workerData as { mark?: string; options?: WorkerSelfProtectionOptions } | null;
if (parentPort && data?.mark === WORKER_MARK && data.options) serveArgumentRequests(parentPort, data.options);
