/**
 * What the gateway knows of the demo tools' risk. Its own module so that `policy explain` and
 * `policy replay` can score demo calls without loading the MCP SDK that the demo tools themselves run on.
 */
export const DEMO_SCORES: Record<string, { score: number; reason: string }> = {
  check_payment_status: { score: 15, reason: "read-only status lookup of a single record" },
  request_payment_extension: { score: 80, reason: "changes a beneficiary's repayment obligations (financial impact)" },
  modify_welfare_record: { score: 95, reason: "edits a welfare record: eligibility, payouts or bank details may change" },
};
