/**
 * Run a Python script under the worktime tier's Pyodide in Node, with the work function's
 * packages loaded: for measurements that need the worker's runtime but not a DCP slice.
 *
 *   node run-python.js PYODIDE_DIR SCRIPT [ARG...]
 *
 * The script sees its arguments as sys.argv[1:]; module `harness` has `read_text(path)` (a
 * host file as a JS string, converted to str as a worker's arguments are) and `measure()`:
 * Node's CPU seconds since start, the wasm heap's size and Node's RSS, in bytes. The wasm heap
 * only grows, so its size after a step is the peak that step (or an earlier one) reached.
 * Python's stdout goes to stdout; Pyodide's start and package load are printed as one JSON line
 * on stderr.
 */
'use strict';

const fs = require('fs');
const path = require('path');

const [pyodideDir, script, ...args] = process.argv.slice(2);

function measure(pyodide)
{
  const cpu = process.cpuUsage();
  return {
    cpu_seconds: (cpu.user + cpu.system) / 1e6,
    wasm_heap_bytes: pyodide._module.HEAPU8.length,
    rss_bytes: process.memoryUsage().rss,
  };
}

async function main()
{
  const { loadPyodide } = require(path.join(pyodideDir, 'pyodide.js'));
  const pyodide = await loadPyodide({ indexURL: pyodideDir + '/', stdout: (line) => process.stdout.write(line + '\n') });
  const started = measure(pyodide);
  await pyodide.loadPackage(['numpy', 'scipy', 'scikit-learn'], { messageCallback: () => {} });
  const loaded = measure(pyodide);
  process.stderr.write(JSON.stringify({ pyodide: pyodide.version, started, loaded }) + '\n');
  pyodide.registerJsModule('harness', {
    measure: () => pyodide.toPy(measure(pyodide)),
    read_text: (file) => fs.readFileSync(file, 'utf8'),
    argv: [script, ...args],
  });
  pyodide.runPython('import sys, harness; sys.argv = list(harness.argv)');
  await pyodide.runPythonAsync(fs.readFileSync(script, 'utf8'));
}

main().then(() => process.exit(0), (error) => {
  process.stderr.write(`run-python: ${error && error.stack || error}\n`);
  process.exit(1);
});
