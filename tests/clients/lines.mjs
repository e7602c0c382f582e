// The line protocol the Tasks client scripts speak with tests/e2e/test_tasks_clients.py:
// one JSON object per line on stdout (emit), and plain command lines on stdin (waitForLine).

import { createInterface } from "node:readline";

export function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

export async function waitForLine(expected) {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === expected) {
      lines.close();
      return;
    }
  }
  throw new Error(`stdin closed before "${expected}"`);
}
