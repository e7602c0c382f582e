// The official Tasks extension client (@modelcontextprotocol/ext-tasks) on the official 2.x client
// (@modelcontextprotocol/client), protocol 2026-07-28, against a real relay-shell over stdio or HTTP.
//
// Driven by tests/e2e/test_tasks_clients.py. argv[2] is a JSON object:
//   {transport: "stdio", command, args, env} | {transport: "http", url}
//   scenario: "complete" | "cancel" | "confirm"
//   tool, arguments: the call; answer: "accept" | "decline" (confirm)
// Protocol on stdout, one JSON object per line: {"event": "task", "taskId"} when the call became a
// task (the "cancel" scenario then waits for a line "cancel" on stdin), and a last line {"event":
// "done", ...} with what happened. Anything else is a failure (exit 1).
//
// ext-tasks needs a host-supplied rawDispatch for 2026-07-28 (the SDK's codecs refuse task wire
// shapes): DivertingTransport wraps the SDK's transport, sends raw requests with ids of its own and
// diverts their responses before the Client sees them.

import { emit, waitForLine } from "./lines.mjs";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { createTaskSessionFromClient } from "@modelcontextprotocol/ext-tasks/client";

const VERSION = "2026-07-28";
const config = JSON.parse(process.argv[2]);
const clientInfo = { name: "relay-shell-tasks-v2-test", version: "1.0.0" };
const clientCapabilities = { elicitation: {} };

class DivertingTransport {
  constructor(inner) {
    this.inner = inner;
    this.pending = new Map();
    this.counter = 0;
  }

  get sessionId() {
    return this.inner.sessionId;
  }

  get hasPerRequestStream() {
    return this.inner.hasPerRequestStream;
  }

  setProtocolVersion(version) {
    this.inner.setProtocolVersion?.(version);
  }

  setSupportedProtocolVersions(versions) {
    this.inner.setSupportedProtocolVersions?.(versions);
  }

  async start() {
    this.inner.onmessage = (message, extra) => {
      const waiter = "method" in message ? undefined : this.pending.get(message.id);
      if (waiter !== undefined) {
        this.pending.delete(message.id);
        waiter(message);
        return;
      }
      this.onmessage?.(message, extra);
    };
    this.inner.onerror = (error) => this.onerror?.(error);
    this.inner.onclose = () => {
      for (const waiter of this.pending.values()) waiter({ error: { code: -32000, message: "connection closed" } });
      this.pending.clear();
      this.onclose?.();
    };
    await this.inner.start();
  }

  send(message, options) {
    return this.inner.send(message, options);
  }

  close() {
    return this.inner.close();
  }

  // rawDispatch for ext-tasks: one request with an id of our own; its response never reaches the Client.
  dispatch = async (request) => {
    const id = `raw-${++this.counter}`;
    const answered = new Promise((resolve) => this.pending.set(id, resolve));
    await this.inner.send({ jsonrpc: "2.0", id, method: request.method, params: request.params });
    const response = await answered;
    return "error" in response ? { kind: "error", error: response.error } : { kind: "result", result: response.result };
  };
}

function innerTransport() {
  if (config.transport === "http") return new StreamableHTTPClientTransport(new URL(config.url));
  return new StdioClientTransport({ command: config.command, args: config.args ?? [], env: config.env, stderr: "inherit" });
}

async function main() {
  const transport = new DivertingTransport(innerTransport());
  const client = new Client(clientInfo, {
    capabilities: clientCapabilities,
    versionNegotiation: { mode: { pin: VERSION } },
  });
  await client.connect(transport);
  const era = client.getProtocolEra();
  const inputRequests = [];
  const session = createTaskSessionFromClient(client, {
    endpointId: `relay-shell-${config.transport}`,
    rawDispatch: transport.dispatch,
    v2RequestFraming: { protocolVersion: VERSION, clientInfo, clientCapabilities },
    onInputRequest: async (request) => {
      inputRequests.push(request.kind);
      return config.answer === "accept" ? { action: "accept", content: { confirm: true } } : { action: "decline" };
    },
  });
  try {
    const execution = await session.callTool(config.tool, config.arguments);
    const taskId = execution.kind === "task" ? execution.handle.taskId : null;
    if (taskId !== null) emit({ event: "task", taskId });
    if (config.scenario === "cancel") {
      await waitForLine("cancel");
      await execution.cancel();
    }
    const { outcome } = await execution.settle();
    let direct = null;
    if (config.scenario === "complete") {
      // The same call answered directly (no task: the client declares no Tasks extension itself).
      direct = await client.callTool({ name: config.tool, arguments: { ...config.arguments, yield_after: 0 } });
    }
    emit({
      event: "done",
      era,
      kind: execution.kind,
      taskId,
      status: outcome.status,
      result: outcome.status === "completed" ? outcome.result : null,
      error: outcome.status === "failed" ? String(outcome.error?.message) : null,
      direct,
      inputRequests,
      extension: client.getServerCapabilities()?.extensions?.["io.modelcontextprotocol/tasks"] ?? null,
    });
  } finally {
    await session.close();
    await client.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    emit({ event: "error", error: String(error?.stack ?? error) });
    process.exit(1);
  },
);
