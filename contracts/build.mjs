// Compile contracts/src/*.sol offline with the pinned solcjs (npm `solc`) and write one artifact
// per deployable contract to bot/devnet/artifacts/<Name>.json (abi + bytecode, pretty JSON,
// deterministic: sorted inputs, no metadata hash, so a rebuild gives identical bytes).
//
// Usage: npm run build-contracts   (or: node contracts/build.mjs [--check])
//   --check: compile and fail (exit 1) if a committed artifact differs from the fresh build.
import { createRequire } from "node:module";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC = join(HERE, "src");
const OUT = resolve(HERE, "..", "bot", "devnet", "artifacts");
const CONTRACTS = ["TestToken", "TestOrderBook"];
const check = process.argv.includes("--check");

const sources = {};
for (const file of readdirSync(SRC).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: readFileSync(join(SRC, file), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

// solc.compile returns a JSON string; solcjs can print stray lines (e.g. ">>> Cannot retry
// compilation with SMT") on some paths, so parse from the first "{" defensively.
function parseCompilerOutput(raw) {
  const start = raw.indexOf("{");
  if (start < 0) throw new Error(`solc returned no JSON: ${raw.slice(0, 200)}`);
  return JSON.parse(raw.slice(start));
}

const output = parseCompilerOutput(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage || e.message);
if (errors.length) process.exit(1);

mkdirSync(OUT, { recursive: true });
let stale = 0;
for (const name of CONTRACTS) {
  const file = Object.keys(output.contracts).find((f) => name in output.contracts[f]);
  if (!file) throw new Error(`contract ${name} not found in compiler output`);
  const c = output.contracts[file][name];
  const artifact = {
    contractName: name,
    sourceName: `contracts/src/${file}`,
    compiler: `solc ${solc.version()}`,
    abi: c.abi,
    bytecode: "0x" + c.evm.bytecode.object,
  };
  const text = JSON.stringify(artifact, null, 2) + "\n";
  const path = join(OUT, `${name}.json`);
  if (check) {
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) {
      console.error(`stale artifact: ${path}`);
      stale += 1;
    }
  } else {
    writeFileSync(path, text);
    console.log(`wrote ${path} (${c.evm.bytecode.object.length / 2} bytes)`);
  }
}
if (stale) process.exit(1);
