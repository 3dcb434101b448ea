// Builds the web console into dist/console: esbuild bundles src/console/main.ts and console.css
// under content-hashed names (so the gateway can cache them for a year), and index.html is written
// from its template with those names. Deterministic: the same sources give the same bytes.
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename } from "node:path";

const out = "dist/console";
await rm(out, { recursive: true, force: true });
await mkdir(`${out}/assets`, { recursive: true });
const result = await build({
  entryPoints: ["src/console/main.ts", "src/console/console.css"],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  entryNames: "[name]-[hash]",
  outdir: `${out}/assets`,
  metafile: true,
  logLevel: "warning",
});
const names = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) names[basename(meta.entryPoint)] = basename(file);
}
const template = await readFile("src/console/index.html", "utf8");
const html = template
  .replace("{{script}}", `/console/assets/${names["main.ts"]}`)
  .replace("{{style}}", `/console/assets/${names["console.css"]}`);
await writeFile(`${out}/index.html`, html);
