// The TypeScript SDK 1.x client's experimental tasks (client.experimental.tasks), protocol
// 2025-11-25, against a real relay-shell over stdio or HTTP.
//
// Driven by tests/e2e/test_tasks_clients.py. argv[2] is a JSON object:
//   {transport: "stdio", command, args, env} | {transport: "http", url}
//   scenario: "complete" | "cancel" | "confirm"
//   tool, arguments: the call; answer: "accept" | "decline" (the elicitation, for "confirm")
// Protocol on stdout, one JSON object per line: {"event": "task", "taskId"} once the task exists
// (the "cancel" scenario then waits for a line "cancel" on stdin), and a last line {"event":
// "done", ...}. Anything else is a failure (exit 1).

import { emit, waitForLine } from "./lines.mjs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const config = JSON.parse(process.argv[2]);

function transport() {
  if (config.transport === "http") return new StreamableHTTPClientTransport(new URL(config.url));
  return new StdioClientTransport({ command: config.command, args: config.args ?? [], env: config.env, stderr: "inherit" });
}

async function main() {
  const client = new Client({ name: "relay-shell-tasks-v1-test", version: "1.0.0" }, { capabilities: { elicitation: {} } });
  const elicitations = [];
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    elicitations.push(request.params.message);
    return config.answer === "accept" ? { action: "accept", content: { confirm: true } } : { action: "decline" };
  });
  await client.connect(transport());
  const tools = (await client.listTools()).tools;
  const support = Object.fromEntries(tools.map((tool) => [tool.name, tool.execution?.taskSupport ?? null]));
  const tasks = client.experimental.tasks;
  let taskId = null;
  let status = null;
  let result = null;
  let error = null;
  const statuses = [];
  const stream = tasks.callToolStream({ name: config.tool, arguments: config.arguments }, CallToolResultSchema, {
    task: { ttl: 60000 },
  });
  for await (const message of stream) {
    if (message.type === "taskCreated") {
      taskId = message.task.taskId;
      emit({ event: "task", taskId, status: message.task.status });
      if (config.scenario === "cancel") {
        await waitForLine("cancel");
        const cancelled = await tasks.cancelTask(taskId);
        statuses.push(`cancel:${cancelled.status}`);
      }
    } else if (message.type === "taskStatus") {
      status = message.task.status;
      statuses.push(status);
    } else if (message.type === "result") {
      result = message.result;
    } else if (message.type === "error") {
      error = { code: message.error.code, message: message.error.message, data: message.error.data ?? null };
    }
  }
  let listed = null;
  let fetched = null;
  let direct = null;
  if (taskId !== null) {
    listed = (await tasks.listTasks()).tasks.map((task) => ({ taskId: task.taskId, status: task.status }));
    fetched = await tasks.getTask(taskId);
  }
  if (config.scenario === "complete") {
    direct = await client.callTool({ name: config.tool, arguments: { ...config.arguments, yield_after: 0 } });
  }
  emit({
    event: "done",
    protocolVersion: client.transport?.protocolVersion ?? null,
    capabilities: client.getServerCapabilities()?.tasks ?? null,
    support,
    taskId,
    status,
    statuses,
    result,
    error,
    listed,
    fetched,
    direct,
    elicitations,
  });
  await client.close();
}

main().then(
  () => process.exit(0),
  (failure) => {
    emit({ event: "error", error: String(failure?.stack ?? failure) });
    process.exit(1);
  },
);
