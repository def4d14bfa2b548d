/**
 * Run one slice of an exported job the way a DCP worker does, with dcp-client's own code.
 *
 *   node run-slice.js JOB_KVIN SLICE_NUMBER[,SLICE_NUMBER...] PYODIDE_DIR ALLOWED_ORIGIN
 *
 * Several slice numbers run one after the other in the same sandbox, as a DCP worker reuses
 * a sandbox for later slices of its job (`checkSandboxReUse`, sandbox2.js).
 *
 * What is dcp-client's own (from the dcp-client inside the installed `dcp` package):
 *  - the Pyodide worktime, libexec/sandbox/pyodide-worktime.js, evaluated unmodified: it
 *    parses the argument vector, registers the `dcp` Python module, loads the packages the
 *    work function imports and calls the SDK's wrapper;
 *  - how job values travel: job-values.js serializeJobValue on the client side, then
 *    utils.decodeData on the worker side; URL arguments fetched and decoded by
 *    utils.fetchURIAndLength (fetch-uri.js) under an origin allow-list;
 *  - the worker's verdict on the slice, from supervisor2/sandbox2.js (source map): no
 *    progress event -> ENOPROGRESS; a work function error -> UncaughtExceptionError as result;
 *  - the result POST: Supervisor#sendResultToRemote (supervisor2/index.js, source map).
 * What is stood in for: the sandbox's ring plumbing (script-load wrapper, worktimes.js), and
 * pyodide-core.js's loader, which fetches Pyodide and packages from DCP's package manager:
 * here Pyodide comes from npm `pyodide` (same release) and packages from official wheels.
 *
 * Prints one JSON line: progress events, the verdict, the result and the sink's receipt, and
 * the wall and CPU seconds of each phase (client init, argument fetch, Pyodide start,
 * initSandbox) and of each slice.
 */
'use strict';

const fs = require('fs');
const path = require('path');

const [jobFile, sliceArg, pyodideDir, allowedOrigin] = process.argv.slice(2);
const dcpClientDir = process.env.DCP_CLIENT_DIR;

/** A function or class's source text from dcp-client's source map, by its opening line. */
function sourceOf(sources, file, opening)
{
  const text = sources.get(file);
  const start = text.indexOf(opening);
  if (start < 0)
    throw new Error(`'${opening}' not found in ${file}`);
  let depth = 0, i = text.indexOf('{', start);
  for (; i < text.length; i++)
  {
    if (text[i] === '{') depth++;
    if (text[i] === '}' && --depth === 0) break;
  }
  return text.slice(start, i + 1);
}

function loadSources()
{
  const map = JSON.parse(fs.readFileSync(path.join(dcpClientDir, 'dist/dcp-client-bundle.js.map'), 'utf8'));
  const sources = new Map();
  map.sources.forEach((name, i) => sources.set(name.replace(/^webpack:\/\/dcp\/\.\//, ''), map.sourcesContent[i]));
  return sources;
}

/** The worker's error classes, exactly as sandbox2.js declares them. */
function sandboxErrors(sources)
{
  const file = 'src/dcp-client/worker/supervisor2/sandbox2.js';
  const code = [
    sourceOf(sources, file, 'class SandboxError extends Error'),
    "class NoProgressError extends SandboxError { constructor(error) { super('ENOPROGRESS', error, 'NoProgressError'); } }",
    "class UncaughtExceptionError extends SandboxError { constructor(error) { super('EUNCAUGHT', error, 'UncaughtExceptionError'); } }",
    'return { NoProgressError, UncaughtExceptionError };',
  ].join('\n');
  return new Function(code)();
}

/** Supervisor#sendResultToRemote, bound to dcp-client's own helpers. */
function resultSender(sources, utils, kvin)
{
  const file = 'src/dcp-client/worker/supervisor2/index.js';
  const method = sourceOf(sources, file, 'async sendResultToRemote (slice)');
  const { DcpURL } = require('dcp/dcp-url');
  /* dcp-error is not among the modules dcp-client exports; the method only uses it to refuse an origin. */
  class DCPError extends Error { constructor(message, code) { super(message); this.code = code; } }
  const factory = new Function('justFetch', 'utils', 'kvin', 'DcpURL', 'DCPError', 'debugging',
    `return { ${method} }.sendResultToRemote;`);
  return factory(utils.justFetch, utils, kvin, DcpURL, DCPError, () => false);
}

/** The sandbox globals the worktime uses, with Pyodide and packages from local files. */
function installSandboxGlobals(progressEvents)
{
  const { loadPyodide } = require(path.join(pyodideDir, 'pyodide.js'));
  const lock = JSON.parse(fs.readFileSync(path.join(pyodideDir, 'pyodide-lock.json'), 'utf8'));
  let pyodide;
  const protectedStorage = { worktimes: { registered: [] } };
  protectedStorage.worktimes.registerWorktime = (info) => protectedStorage.worktimes.registered.push(info);

  globalThis.self = globalThis;
  globalThis.wrapScriptLoading = (options, fn) => fn(protectedStorage, () => {}, () => {});
  globalThis.progress = (value) => { progressEvents.push(value === undefined ? null : value); return true; };
  globalThis.pyodideInit = async () => {
    if (!pyodide)
    {
      pyodide = await loadPyodide({ indexURL: pyodideDir + '/' });
      globalThis.pyodideVersion = pyodide.version;
      /* Pure-Python packages with no reachable official build (see pyodide_dist.py). */
      for (const wheel of fs.readdirSync(path.join(pyodideDir, 'upstream')))
        pyodide.unpackArchive(new Uint8Array(fs.readFileSync(path.join(pyodideDir, 'upstream', wheel))), 'wheel');
    }
    return pyodide;
  };
  /* pyodide-core.js's fetchAndInitPyodidePackages, less the DCP package-manager download. */
  globalThis.fetchAndInitPyodidePackages = async (names) => {
    const byImport = {};
    for (const [name, pkg] of Object.entries(lock.packages))
      for (const imported of pkg.imports) byImport[imported] = name;
    for (let i = 0; i < names.length; i++)
      if (byImport[names[i]]) names[i] = byImport[names[i]];
    for (const name of names)
      if (!lock.packages[name])
        throw new Error(`Usage of unsupported package "${name}". "${name}" is currently not supported by the Pyodide Worktime.`);
    const missing = names.filter((n) => !(n in pyodide.loadedPackages));
    if (missing.length) await pyodide.loadPackage(missing, { messageCallback: () => {} });
    return true;
  };
  return protectedStorage;
}

/** Arguments as the worker has them: values through job-values + decodeData, URLs fetched. */
async function workerArguments(args, utils, jobValues, kvin, originManager)
{
  const out = [];
  for (const arg of args)
  {
    if (arg && typeof arg === 'object' && typeof arg.$url === 'string')
    {
      const fetched = await utils.fetchURIAndLength(new URL(arg.$url), originManager, 'fetchArguments');
      out.push(fetched.data);
      continue;
    }
    const encoded = jobValues.serializeJobValue(arg, kvin);
    const { contentType, parameters } = utils.parseContentType(encoded.MIMEType);
    out.push(asSandboxValue(utils.decodeData({ serializedData: encoded.string, contentType, parameters })));
  }
  return out;
}

/** Node's KVIN revives bytes as Buffer; a sandbox has no Buffer, it sees a Uint8Array. */
function asSandboxValue(value)
{
  if (ArrayBuffer.isView(value))
    return Uint8Array.from(value);
  if (Array.isArray(value))
    return value.map(asSandboxValue);
  return value;
}

/** worktimes.js reportError: the error as the sandbox posts it to the supervisor. */
function reportedError(error)
{
  const err = new Error('initial state');
  for (const prop of ['message', 'name', 'code', 'stack', 'lineNumber', 'columnNumber'])
    if (error && typeof error[prop] !== 'undefined') err[prop] = error[prop];
  return err;
}

/** Wall and CPU seconds since `since` (both from this process's clocks). */
function clock(since)
{
  const cpu = process.cpuUsage();
  const now = { wall: performance.now() / 1000, cpu: (cpu.user + cpu.system) / 1e6 };
  return since ? { wall: now.wall - since.wall, cpu: now.cpu - since.cpu } : now;
}

/** Run one slice in the initialised sandbox and post its result, as the worker does. */
async function runOne(sliceNumber, ctx)
{
  const { worktime, job, utils, jobValues, kvin, originManager, progressEvents } = ctx;
  progressEvents.length = 0;
  const report = { sliceNumber, progressEvents: [] };
  const started = clock();
  let verdict, result;
  try
  {
    const datum = await workerArguments([job.inputData[sliceNumber - 1]], utils, jobValues, kvin, originManager);
    try
    {
      result = await worktime.processSlice(datum[0]);
      verdict = progressEvents.length ? 'complete' : 'rejected';
      if (!progressEvents.length) report.error = { ...new ctx.NoProgressError('Sandbox never emitted a progress event.') };
    }
    catch (error)
    {
      /* Implementation of workFn-errors-as-results (sandbox2.js 'workError'). */
      const posted = kvin.unmarshal(kvin.marshal(reportedError(error)));
      result = new ctx.UncaughtExceptionError(posted);
      verdict = 'workError';
    }
  }
  catch (error)
  {
    verdict = 'sandboxError';
    report.error = { name: error.name, message: String(error.message).slice(0, 4000) };
  }
  report.clock = clock(started);
  report.progressEvents = progressEvents.slice();
  report.verdict = verdict;
  if (verdict === 'complete' || verdict === 'workError')
  {
    report.result = JSON.parse(JSON.stringify(result));
    if (process.env.RUN_SLICE_NO_POST)  /* measurements that need no sink */
      return report;
    const slice = {
      sliceNumber,
      result: { result },
      resultStorageDetails: job.resultStorageDetails,
      resultStorageParams: job.resultStorageParams,
      jobManager: { public: { computeGroups: [] } },
    };
    try
    {
      report.receipt = await ctx.sendResultToRemote.call({ originManager }, slice);
    }
    catch (error)
    {
      /* A non-2xx answer: the worker treats the slice as failed (just-fetch.js). */
      report.postError = String(error.message).slice(0, 1000);
    }
  }
  return report;
}

async function main()
{
  const started = clock();
  const progressEvents = [];
  const protectedStorage = installSandboxGlobals(progressEvents);
  await require(dcpClientDir).init();
  const utils = require('dcp/utils');
  const kvin = require('dcp/internal/kvin');
  const jobValues = require('dcp/internal/job-values');
  const sources = loadSources();
  const { NoProgressError, UncaughtExceptionError } = sandboxErrors(sources);
  const sendResultToRemote = resultSender(sources, utils, kvin);
  const originManager = { isAllowed: (origin) => new URL(origin).origin === new URL(allowedOrigin).origin };

  const job = kvin.deserialize(fs.readFileSync(jobFile, 'utf8'));
  const sliceNumbers = String(sliceArg).split(',').map(Number);
  const worktimeSource = path.join(dcpClientDir, 'libexec/sandbox/pyodide-worktime.js');
  new Function(fs.readFileSync(worktimeSource, 'utf8'))();
  const worktime = protectedStorage.worktimes.registered.find((w) => w.name === job.worktime.name);

  /* Job#exec asks for '^' + the version the client's own worktime registry has. */
  const requested = `${job.worktime.name} ^${worktime.version}`;
  const phases = { clientInit: clock(started) };
  const report = { worktime: { requested }, phases };
  const ctx = { worktime, job, utils, jobValues, kvin, originManager, progressEvents,
                NoProgressError, UncaughtExceptionError, sendResultToRemote };
  let slices = [];
  try
  {
    let mark = clock();
    const workFunction = (await utils.fetchURIAndLength(job.workFunctionURI, false, 'fetchWorkFunctions')).data;
    const args = await workerArguments(job.arguments, utils, jobValues, kvin, originManager);
    phases.fetchArguments = clock(mark);
    report.argumentKinds = args.map((a) => (a instanceof String ? 'String object' : typeof a));
    mark = clock();
    const pyodideInit = globalThis.pyodideInit;
    globalThis.pyodideInit = async () => {
      const first = !globalThis.pyodideVersion, pyodide = await pyodideInit();
      if (first) phases.pyodideStart = clock(mark);
      return pyodide;
    };
    await worktime.initSandbox({ workFunction, arguments: args, worktime: job.worktime });
    phases.initSandbox = clock(mark);  /* Pyodide start, argv conversion, package load */
    for (const sliceNumber of sliceNumbers)
      slices.push(await runOne(sliceNumber, ctx));
  }
  catch (error)
  {
    slices = [{ sliceNumber: sliceNumbers[0], progressEvents: [], verdict: 'sandboxError',
                error: { name: error.name, message: String(error.message).slice(0, 4000) } }];
  }
  report.worktime.pyodide = globalThis.pyodideVersion;
  /* The first slice's report at the top level; with several slice numbers, all of them in
     `slices`, run one after the other in the same sandbox (as DCP reuses a sandbox). */
  const setup = ['fetchArguments', 'initSandbox'].reduce((sum, k) => sum + (phases[k] ? phases[k].wall : 0), 0);
  Object.assign(report, slices[0], { seconds: setup + (slices[0].clock ? slices[0].clock.wall : 0) });
  if (sliceNumbers.length > 1)
    report.slices = slices;
  /* A pipe is written asynchronously: exit only once the whole line is out. */
  await new Promise((resolve) => process.stdout.write(JSON.stringify(report) + '\n', resolve));
}

main().then(() => process.exit(0), (error) => {
  process.stderr.write(`run-slice: ${error && error.stack || error}\n`);
  process.exit(1);
});
