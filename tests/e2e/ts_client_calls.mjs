// Drives relay-shell over stdio with the official TypeScript SDK client (1.x), which compiles
// every tool's outputSchema with Ajv at tools/list and validates structuredContent against it
// on every call, isError results included. Usage: node ts_client_calls.mjs RELAY CALLS_JSON
// Prints one JSON line: the number of tools and, per call, whether the client accepted it.
// An argument "$session" stands for the session_id of the last result that carried one.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [relay, callsJson] = process.argv.slice(2);
const transport = new StdioClientTransport({ command: relay, args: [], env: process.env, stderr: "inherit" });
const client = new Client({ name: "relay-ts-check", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
const results = [];
let session = null;
for (const [name, given] of JSON.parse(callsJson)) {
  const args = Object.fromEntries(Object.entries(given).map(([key, value]) => [key, value === "$session" ? session : value]));
  try {
    const result = await client.callTool({ name, arguments: args });
    session = result.structuredContent?.session_id ?? session;
    results.push({ name, accepted: true, isError: Boolean(result.isError), kind: result.structuredContent?.error?.kind ?? null });
  } catch (error) {
    results.push({ name, accepted: false, message: String(error?.message ?? error) });
  }
}
console.log(JSON.stringify({ tools: tools.length, results }));
await client.close();
