#!/usr/bin/env node
// The textpipe example's Node worker: serves `textpipe.count` on a tidemesh mesh.
//
//   TIDEMESH_API_KEY=tmk_… node examples/textpipe/node/worker.mjs --endpoint 127.0.0.1:8443 --ca state/pki/ca.crt
//
// The credential comes from $TIDEMESH_API_KEY or the file $TIDEMESH_API_KEY_FILE — never an argument
// (argv is visible to every user of the machine). Every option also has an environment variable.
import { parseArgs } from "node:util";
import { ConfigError, Worker } from "../../../clients/node/src/index.js";
import { CountRequestSchema, CountResultSchema } from "../../../clients/node/src/gen/textpipe/v1/textpipe_pb.js";
import { count } from "./count.mjs";

const USAGE = `usage: worker.mjs [--endpoint HOST:PORT] [--ca PEM] [--name NAME] [--capacity N]
                 [--label KEY=VALUE]... [--build-id ID] [--insecure]
environment: TIDEMESH_ENDPOINT, TIDEMESH_CA, TIDEMESH_API_KEY or TIDEMESH_API_KEY_FILE, TIDEMESH_WORKER_NAME,
             TIDEMESH_CAPACITY, TIDEMESH_LABELS (k=v,k=v), TIDEMESH_BUILD_ID, TIDEMESH_LOG_LEVEL`;

function parseLabels(pairs) {
  const labels = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new ConfigError(`label: KEY=VALUE expected, got ${JSON.stringify(pair)}`);
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return labels;
}

function options(argv, env) {
  const { values } = parseArgs({
    args: argv,
    options: {
      endpoint: { type: "string" },
      ca: { type: "string" },
      name: { type: "string" },
      capacity: { type: "string" },
      label: { type: "string", multiple: true },
      "build-id": { type: "string" },
      insecure: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    process.exit(0);
  }
  const envLabels = (env.TIDEMESH_LABELS || "").split(",").filter(Boolean);
  const capacity = values.capacity ?? env.TIDEMESH_CAPACITY ?? "1";
  if (!/^\d+$/.test(capacity)) throw new ConfigError(`capacity: a whole number, got ${JSON.stringify(capacity)}`);
  return {
    endpoint: values.endpoint ?? env.TIDEMESH_ENDPOINT,
    ca: values.ca ?? env.TIDEMESH_CA,
    insecure: values.insecure ?? false,
    name: values.name ?? env.TIDEMESH_WORKER_NAME ?? `textpipe-node-${process.pid}`,
    capacity: Number(capacity),
    labels: { ...parseLabels(envLabels), ...parseLabels(values.label ?? []) },
    buildId: values["build-id"] ?? env.TIDEMESH_BUILD_ID ?? "",
  };
}

async function main() {
  let worker;
  try {
    worker = new Worker(options(process.argv.slice(2), process.env));
  } catch (err) {
    process.stderr.write(`worker.mjs: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  worker.task("textpipe.count", { input: CountRequestSchema, output: CountResultSchema }, count);
  try {
    await worker.run();
  } catch (err) {
    process.stderr.write(`worker.mjs: ${err.message}\n`);
    process.exit(1);
  }
}

await main();
