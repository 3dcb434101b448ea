// Reads a JSON array of PromQL expressions on stdin; writes, for each, the metric names its vector
// selectors name and the text of every syntax error, parsed with Prometheus' own grammar.
import { parser } from "@prometheus-io/lezer-promql";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((expr) => {
  const metrics = new Set();
  const errors = [];
  const cursor = parser.parse(expr).cursor();
  do {
    if (cursor.type.isError) errors.push(`at ${cursor.from}: ${JSON.stringify(expr.slice(cursor.from, cursor.from + 20))}`);
    if (cursor.name === "Identifier") {
      const node = cursor.node;
      if (node.parent && node.parent.name === "VectorSelector") metrics.add(expr.slice(cursor.from, cursor.to));
    }
  } while (cursor.next());
  return { metrics: [...metrics].sort(), errors };
});
process.stdout.write(JSON.stringify(results));
