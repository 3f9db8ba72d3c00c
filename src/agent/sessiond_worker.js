'use strict';
/*
 * The sessiond NodeLTS worker: hosts the session's persistent JavaScript
 * interpreter. The counterpart of sessiond_worker.py for `--language node`;
 * the agent talks to both the same way:
 *
 *   agent  -> worker  {"type":"execute","code":S,"sentinel":S}
 *   worker -> agent   {"type":"ready","preloadErrors":[],"runtime":{...}}   once, when warm
 *                     {"type":"done","status":"ok"|"error","result":ANY,
 *                      "interrupted":B,"exiting":B}
 *
 * Frames are a 4-byte big-endian length and UTF-8 JSON, on the socket given
 * by --control-fd. After each cell the worker writes the sentinel to fd 1 and
 * fd 2 before sending "done", so the agent knows where the cell's output ends.
 *
 * Cells run with vm.runInThisContext, in the worker's own global context,
 * rather than in a vm.createContext sandbox: objects made by node's built-in
 * modules (fs, JSON, Buffer, errors) then come from the same realm as the
 * user's, so `instanceof Array` and friends behave, and the global scope is
 * shared by all cells exactly as in the `node` REPL (which does the same).
 * The worker's own state lives in this module's scope, and it keeps its own
 * references to what it needs, so a cell that replaces globals such as JSON
 * or console does not break the protocol.
 *
 * Only node's built-in modules are used: the same file runs on Node 18
 * (Debian 12) and 20.
 */

const fs = require('fs');
const Module = require('module');
const net = require('net');
const path = require('path');
const util = require('util');
const vm = require('vm');
const { Writable } = require('stream');

const stringify = JSON.stringify;
const parseJson = JSON.parse;
const inspect = util.inspect;
const isPromise = util.types.isPromise;
const isNativeError = util.types.isNativeError;
const realExit = process.exit.bind(process);
const WORKER_FILE = __filename;

// Keeps the reply well below the 64 MiB frame limit even when every character
// needs a six-byte JSON escape.
const MAX_RESULT_CHARS = 8 << 20;
const MAX_FRAME_BYTES = 64 << 20;
const PARENT_POLL_MS = 1000;

// --- output ---------------------------------------------------------------

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function writeAll(fd, data) {
  const buffer = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(fd, buffer, offset, buffer.length - offset);
    } catch (e) {
      // A non-blocking fd (the control socket, or a pipe a child process
      // made non-blocking) with a full buffer: wait for the reader.
      if (e.code !== 'EAGAIN') throw e;
      Atomics.wait(sleepCell, 0, 0, 1);
    }
  }
}

// node writes to pipes asynchronously when they are full, so a cell's last
// output could reach the pipe after its sentinel. These streams write
// synchronously and replace process.stdout and process.stderr before anything
// (the global console included, which binds to them on first use) looks at
// the originals, which would also make fd 1 and 2 non-blocking for the
// subprocesses that inherit them.
function synchronousStream(fd) {
  const stream = new Writable({
    decodeStrings: false,
    write(chunk, encoding, callback) {
      try {
        writeAll(fd, typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk);
      } catch {
        // The agent is gone; the control socket's end stops the worker.
      }
      callback();
    },
  });
  stream.fd = fd;
  return stream;
}

const stdout = synchronousStream(1);
const stderr = synchronousStream(2);
Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => stdout });
Object.defineProperty(process, 'stderr', { configurable: true, enumerable: true, get: () => stderr });

function writeErr(text) {
  stderr.write(text.endsWith('\n') ? text : text + '\n');
}

// --- the global scope that cells see ----------------------------------------

function setUpGlobals() {
  // Like the node REPL's: `require` resolves relative paths and node_modules
  // from the working directory, and built-in modules are there by name.
  const cwd = process.cwd();
  const filename = path.join(cwd, '<repl>');
  const replRequire = Module.createRequire(filename);
  const replModule = new Module(filename);
  replModule.filename = filename;
  replModule.paths = replRequire.resolve.paths('x') || [];
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { configurable: true, writable: true, value });
  define('require', replRequire);
  define('module', replModule);
  define('exports', replModule.exports);
  // Not in the node REPL, but code written as a script often uses them.
  define('__filename', filename);
  define('__dirname', cwd);

  for (const name of Module.builtinModules) {
    if (name.startsWith('_') || name.includes('/') || name in globalThis) continue;
    Object.defineProperty(globalThis, name, {
      configurable: true,
      get() {
        const value = replRequire(name);
        define(name, value);
        return value;
      },
      set(value) {
        define(name, value);
      },
    });
  }
  return replRequire;
}

const replRequire = setUpGlobals();

// import() in a cell resolves against the working directory. Node 20 has a
// loader for that (its first use prints an experimental warning, which
// warmUp() takes before the first cell). Node 18 accepts a loader callback
// only under --experimental-vm-modules, so there a cell's import() is
// refused and require() is the way to load modules.
const importModuleDynamically = vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER;

// --- compiling a cell ---------------------------------------------------------

let cellNumber = 0;

function compile(code, filename, lineOffset = 0) {
  const options = { filename, lineOffset };
  if (importModuleDynamically) options.importModuleDynamically = importModuleDynamically;
  return new vm.Script(code, options);
}

/*
 * Returns {script, wrapped}: `wrapped` scripts are async functions whose
 * promise resolves to {value} (the last expression) or undefined.
 *
 * A cell is first compiled as a script, so declarations land in the global
 * scope. Only a cell that does not compile and mentions `await` is turned
 * into an async function, the way the node REPL does it: top-level
 * declarations are hoisted out of the function (let/const/class as `let`,
 * var/function as `var`) and become assignments inside it, and the last
 * expression statement is returned. If that rewrite does not compile the cell
 * still runs, wrapped as it is, with its declarations local to the cell.
 */
function compileCell(code) {
  const filename = `REPL${++cellNumber}`;
  // `{ a: 1 }` is an object, not a block with a label, as in the REPL.
  if (/^\s*\{/.test(code) && !/;\s*$/.test(code)) {
    try {
      return { script: compile(`(${code.trim()}\n)`, filename), wrapped: false };
    } catch {
      // a block after all
    }
  }
  try {
    return { script: compile(code, filename), wrapped: false };
  } catch (e) {
    if (!/\bawait\b/.test(code)) throw e;
  }
  const rewritten = rewriteTopLevelAwait(code);
  if (rewritten !== null) {
    try {
      return { script: compile(rewritten, filename, -1), wrapped: true };
    } catch {
      // fall back to the plain wrapper
    }
  }
  try {
    return { script: compile(`(async () => {\n${code}\n})()`, filename, -1), wrapped: true };
  } catch (e) {
    // With `await` allowed, this error is about the cell's real problem.
    throw e;
  }
}

// --- top-level await: a tokenizer just good enough to find declarations ------
//
// The node REPL finds them with its bundled acorn parser, which user code
// cannot load; whatever this approximation produces is compiled before it runs.

const LINE_BREAK = /[\n\r\u2028\u2029]/;
const PUNCTUATORS = ['>>>=', '...', '===', '!==', '**=', '<<=', '>>=', '>>>', '&&=', '||=',
  '??=', '=>', '==', '!=', '<=', '>=', '&&', '||', '??', '?.', '++', '--', '+=', '-=', '*=',
  '/=', '%=', '&=', '|=', '^=', '**', '<<', '>>'];
// After these words an expression starts, so `/` begins a regular expression.
const OPERATOR_WORDS = new Set(['return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete',
  'void', 'throw', 'case', 'do', 'else', 'yield', 'await', 'extends']);
// A line starting with one of these continues the previous line's expression.
const CONTINUING = new Set(['.', '?.', '(', '[', ',', '?', ':', '=', '=>', '+', '-', '*', '/',
  '%', '**', '==', '===', '!=', '!==', '<', '>', '<=', '>=', '&&', '||', '??', '&', '|', '^',
  '<<', '>>', '>>>', '+=', '-=', '*=', '/=', '%=', '**=', '&=', '|=', '^=', '<<=', '>>=',
  '>>>=', '&&=', '||=', '??=', 'in', 'instanceof']);

class Unparsable extends Error {}

/*
 * Splits source into tokens {type, text, start, end, depth, closes, newline}:
 * depth counts the brackets around the token (a closing bracket, which
 * `closes`, has the depth outside it); newline says a line break precedes it.
 * Strings, comments, template literals and regular expressions are told apart
 * from code; the rest is approximate, which is fine because the result is
 * compiled before it is used.
 */
function tokenize(src) {
  const tokens = [];
  const open = [];  // '(', '[', '{' and '${' of template literals
  let newline = false;
  let i = 0;
  const at = (j) => src[j] || '';

  function scanQuoted(j, quote) {
    for (j++; j < src.length; j++) {
      if (src[j] === '\\') j++;
      else if (src[j] === quote) return j + 1;
      else if (LINE_BREAK.test(src[j])) break;
    }
    throw new Unparsable();
  }
  function scanTemplate(j) {  // j: just past ` or }; returns [end, endsLiteral]
    for (; j < src.length; j++) {
      if (src[j] === '\\') j++;
      else if (src[j] === '`') return [j + 1, true];
      else if (src[j] === '$' && src[j + 1] === '{') return [j + 2, false];
    }
    throw new Unparsable();
  }
  function scanRegExp(j) {
    let inClass = false;
    for (j++; j < src.length; j++) {
      const ch = src[j];
      if (ch === '\\') j++;
      else if (LINE_BREAK.test(ch)) break;
      else if (ch === '[') inClass = true;
      else if (ch === ']') inClass = false;
      else if (ch === '/' && !inClass) {
        for (j++; /[A-Za-z]/.test(at(j)); j++);
        return j;
      }
    }
    throw new Unparsable();
  }
  function regExpAllowed(prev) {
    if (!prev) return true;
    switch (prev.type) {
      case 'name': return OPERATOR_WORDS.has(prev.text);
      case 'template': return prev.text.endsWith('${');
      case 'punct': return ![')', ']', '++', '--'].includes(prev.text);
      default: return false;
    }
  }

  while (i < src.length) {
    const c = src[i];
    if (LINE_BREAK.test(c)) {
      newline = true;
      i++;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '/' && at(i + 1) === '/') {
      while (i < src.length && !LINE_BREAK.test(src[i])) i++;
      continue;
    }
    if (c === '/' && at(i + 1) === '*') {
      const end = src.indexOf('*/', i + 2);
      if (end < 0) throw new Unparsable();
      if (LINE_BREAK.test(src.slice(i, end))) newline = true;
      i = end + 2;
      continue;
    }
    const start = i;
    let type = 'punct';
    let depth = open.length;
    let closes = false;
    if (c === '`' || (c === '}' && open[open.length - 1] === '${')) {
      if (c === '}') {
        open.pop();
        depth = open.length;
        closes = true;
      }
      let endsLiteral;
      [i, endsLiteral] = scanTemplate(i + 1);
      if (!endsLiteral) open.push('${');
      type = 'template';
    } else if (c === '"' || c === "'") {
      i = scanQuoted(i, c);
      type = 'string';
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(at(i + 1)))) {
      for (i++; /[0-9A-Za-z_.]/.test(at(i)); i++);
      type = 'number';
    } else if (/[A-Za-z_$#\\\u0080-\uffff]/.test(c)) {
      for (i++; /[A-Za-z0-9_$\\\u0080-\uffff]/.test(at(i)); i++);
      type = 'name';
    } else if (c === '/' && regExpAllowed(tokens[tokens.length - 1])) {
      i = scanRegExp(i);
      type = 'regexp';
    } else {
      const text = PUNCTUATORS.find((p) => src.startsWith(p, i)) || c;
      i += text.length;
      if (text === '(' || text === '[' || text === '{') {
        open.push(text);
      } else if (text === ')' || text === ']' || text === '}') {
        if (open.length === 0) throw new Unparsable();
        open.pop();
        depth = open.length;
        closes = true;
      }
    }
    tokens.push({ type, text: src.slice(start, i), start, end: i, depth, closes, newline });
    newline = false;
  }
  if (open.length !== 0) throw new Unparsable();
  return tokens;
}

const is = (token, type, text) => token !== undefined && token.type === type && token.text === text;

// Whether a line break between prev and next leaves one expression going on.
function continuesAcrossLine(prev, next) {
  if (prev.type === 'punct' && ![')', ']', '}', '++', '--'].includes(prev.text)) return true;
  if (prev.type === 'name' && OPERATOR_WORDS.has(prev.text) && prev.text !== 'return') return true;
  if (prev.type === 'template' && prev.text.endsWith('${')) return true;
  if (next.type === 'template' && next.text.startsWith('`')) return true;  // tagged template
  return (next.type === 'punct' || next.type === 'name') && CONTINUING.has(next.text);
}

// Whether token k (at depth 0) can begin a statement.
function startsStatement(tokens, k) {
  if (k === 0) return true;
  if (tokens[k].closes) return false;
  const prev = tokens[k - 1];
  if (is(prev, 'punct', ';') || is(prev, 'punct', '}')) return true;
  return tokens[k].newline && !continuesAcrossLine(prev, tokens[k]);
}

// Skips an expression starting at token k inside `depth` brackets: up to a
// comma or semicolon at that depth, a bracket closing it, or, at the top, a
// line break where a statement ends.
function skipExpression(tokens, k, depth) {
  for (; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.depth < depth) break;
    if (t.depth === depth && t.type === 'punct' && (t.text === ',' || t.text === ';')) break;
    if (t.depth === 0 && depth === 0 && !t.closes && t.newline &&
        !continuesAcrossLine(tokens[k - 1], t)) break;
  }
  return k;
}

// Parses a binding (a name or a destructuring pattern) at token k, adding
// the names it binds; returns the index after it.
function parseBinding(tokens, k, names) {
  const t = tokens[k];
  if (t && t.type === 'name') {
    names.push(t.text);
    return k + 1;
  }
  if (!is(t, 'punct', '[') && !is(t, 'punct', '{')) throw new Unparsable();
  const inner = t.depth + 1;
  const object = t.text === '{';
  k++;
  while (k < tokens.length && tokens[k].depth >= inner) {
    if (is(tokens[k], 'punct', ',')) {  // separator, or a hole in an array
      k++;
      continue;
    }
    if (is(tokens[k], 'punct', '...')) {
      k = parseBinding(tokens, k + 1, names);
    } else if (object) {
      const key = tokens[k];
      if (is(key, 'punct', '[')) {  // computed key
        k++;
        while (tokens[k] && tokens[k].depth > key.depth) k++;
        k++;
      } else {
        k++;
      }
      if (is(tokens[k], 'punct', ':')) k = parseBinding(tokens, k + 1, names);
      else if (key.type === 'name') names.push(key.text);
      else throw new Unparsable();
    } else {
      k = parseBinding(tokens, k, names);
    }
    if (is(tokens[k], 'punct', '=')) k = skipExpression(tokens, k + 1, inner);
  }
  if (!tokens[k]) throw new Unparsable();
  return k + 1;  // past the closing bracket
}

// The rewrite described at compileCell(), or null if the cell cannot be
// tokenized.
function rewriteTopLevelAwait(src) {
  let tokens;
  try {
    tokens = tokenize(src);
  } catch (e) {
    if (e instanceof Unparsable) return null;
    throw e;
  }
  const hoisted = [];
  const edits = [];  // [position, characters removed, text inserted]
  const endStatement = (last, next) => {
    if (!is(next, 'punct', ';')) edits.push([last.end, 0, ';']);
  };

  try {
    for (let k = 0; k < tokens.length; k++) {
      const t = tokens[k];
      if (t.depth !== 0 || t.type !== 'name' || !startsStatement(tokens, k)) continue;
      const next = tokens[k + 1];
      const declaresLet = t.text === 'let' && next &&
        (next.type === 'name' || is(next, 'punct', '[') || is(next, 'punct', '{'));
      if (declaresLet || t.text === 'const' || t.text === 'var') {
        // `let a = 1, {b} = c` becomes `0,  a = 1, {b} = c`: assignments to
        // the hoisted names, same length so columns in stacks still match.
        const names = [];
        let j = k + 1;
        for (;;) {
          j = parseBinding(tokens, j, names);
          if (is(tokens[j], 'punct', '=')) j = skipExpression(tokens, j + 1, 0);
          if (!is(tokens[j], 'punct', ',')) break;
          j++;
        }
        edits.push([t.start, t.text.length, '0,'.padEnd(t.text.length)]);
        endStatement(tokens[j - 1], tokens[j]);
        hoisted.push(`${t.text === 'var' ? 'var' : 'let'} ${names.join(', ')}; `);
        k = j - 1;
      } else if (t.text === 'function' || (t.text === 'async' && is(next, 'name', 'function') && !next.newline)) {
        // The declaration stays (hoisted within the cell); it is also
        // published as a global, as the REPL does.
        let j = t.text === 'async' ? k + 2 : k + 1;
        if (is(tokens[j], 'punct', '*')) j++;
        const name = tokens[j];
        if (!name || name.type !== 'name') throw new Unparsable();
        edits.push([t.start, 0, `this.${name.text} = ${name.text}; `]);
        hoisted.push(`var ${name.text}; `);
      } else if (t.text === 'class') {
        const name = next;
        if (!name || name.type !== 'name') throw new Unparsable();
        let j = k + 2;
        while (tokens[j] && !(is(tokens[j], 'punct', '{') && tokens[j].depth === 0)) j++;
        while (tokens[j + 1] && tokens[j + 1].depth > 0) j++;
        const close = tokens[j + 1];
        if (!close) throw new Unparsable();
        edits.push([t.start, 0, `${name.text}=`]);
        endStatement(close, tokens[j + 2]);
        hoisted.push(`let ${name.text}; `);
        k = j + 1;
      }
    }
  } catch (e) {
    if (e instanceof Unparsable) return null;
    throw e;
  }

  // The last statement, if it is an expression, is returned wrapped in an
  // object so that a promise it evaluates to is not awaited twice.
  let last = tokens.length - 1;
  while (last >= 0 && is(tokens[last], 'punct', ';')) last--;
  if (last >= 0) {
    let from = 0;
    for (let k = 0; k < last; k++) if (tokens[k].depth === 0 && is(tokens[k], 'punct', ';')) from = k + 1;
    const candidates = [];
    for (let k = from; k <= last; k++) {
      if (tokens[k].depth === 0 && startsStatement(tokens, k)) candidates.push(k);
    }
    // The statement that ends the cell starts at the earliest line break
    // after which the rest is still one expression; the compiler decides.
    let first = -1;
    for (const k of candidates.slice(-100)) {
      const t = tokens[k];
      const declaration = ['let', 'const', 'var', 'function', 'class'].includes(t.text) ||
        (t.text === 'async' && is(tokens[k + 1], 'name', 'function')) || is(t, 'punct', '{');
      if (declaration || t.type === 'name' && ['import', 'export'].includes(t.text)) continue;
      try {
        compile(`(async () => (\n${src.slice(t.start, tokens[last].end)}\n))`, 'check');
        first = k;
        break;
      } catch {
        // not a single expression
      }
    }
    if (first >= 0) {
      edits.push([tokens[first].start, 0, 'return { value: (']);
      edits.push([tokens[last].end, 0, ') }']);
    }
  }

  let body = src;
  for (const [position, removed, text] of edits.sort((a, b) => b[0] - a[0])) {
    body = body.slice(0, position) + text + body.slice(position + removed);
  }
  return `${hoisted.join('')}(async () => {\n${body}\n})()`;
}

// --- running a cell -------------------------------------------------------------

let current = null;  // the running cell: {interrupted, failure, wake}
let controlOpen = true;
let control = -1;

class Interrupted extends Error {}

// Waits for a promise, unless the cell is interrupted or fails meanwhile.
function waitFor(promise) {
  const cell = current;
  return new Promise((resolve, reject) => {
    cell.wake = () => reject(cell.failure || new Interrupted());
    if (cell.interrupted || cell.failure) cell.wake();
    promise.then(resolve, reject);
  }).finally(() => {
    cell.wake = null;
  });
}

// Between cells an interrupt meant for a cell that has just finished must
// not end the worker. During a cell's synchronous part vm's breakOnSigint
// takes SIGINT instead of this listener; afterwards, it stops the await.
process.on('SIGINT', () => {
  if (current === null) return;
  current.interrupted = true;
  if (current.wake) current.wake();
});

function trimStack(stack) {
  // Frames below the cell are the worker's; the node REPL hides them too.
  const lines = stack.split('\n');
  const ours = lines.findIndex((line, k) => k > 0 && /^\s+at /.test(line) &&
    (line.includes(WORKER_FILE) || line.includes('node:vm:') || line.includes('(node:vm')));
  return ours < 0 ? stack : lines.slice(0, ours).join('\n');
}

// The inspect text of a value; an error's without the worker's frames,
// which are put back afterwards as the value may live on.
function safeInspect(value) {
  let stack;
  try {
    if ((isNativeError(value) || value instanceof Error) && typeof value.stack === 'string') {
      stack = value.stack;
      value.stack = trimStack(stack);
    }
  } catch {
    // a frozen error keeps its stack
  }
  try {
    return inspect(value, { showProxy: true });
  } catch (e) {
    return Object.prototype.toString.call(value);
  } finally {
    try {
      if (stack !== undefined) value.stack = stack;
    } catch {
      // as above
    }
  }
}

// "Uncaught Error: ...", like the node REPL.
function describeThrown(value) {
  const error = isNativeError(value) || value instanceof Error;
  let text = safeInspect(value);
  // inspect brackets an error without stack frames, such as a SyntaxError.
  if (error && text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  const lines = text.split('\n');
  // A SyntaxError's text starts with the line and a caret.
  const first = error ? lines.findIndex((line) => /^\[?([A-Z][a-z0-9_]*)*Error/.test(line)) : -1;
  if (first >= 0) {
    lines[first] = 'Uncaught ' + lines[first];
    return lines.join('\n');
  }
  return lines.length === 1 ? `Uncaught ${text}` : `Uncaught:\n${text}`;
}

function isInterrupt(e) {
  return e instanceof Interrupted ||
    (e !== null && typeof e === 'object' && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED');
}

function jsonSafeText(text) {
  if (text.length > MAX_RESULT_CHARS) {
    const omitted = text.length - MAX_RESULT_CHARS;
    text = text.slice(0, MAX_RESULT_CHARS) + `\n[result truncated: ${omitted} characters omitted]`;
  }
  // A lone surrogate cannot be encoded as UTF-8 by the agent.
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

function resultValue(value) {
  switch (typeof value) {
    case 'undefined':
      return '';
    case 'number':
      return Number.isFinite(value) ? value : String(value);  // "NaN", "Infinity", "-Infinity"
    case 'boolean':
      return value;
    case 'string':
      return jsonSafeText(value);
    default:
      return value === null ? null : jsonSafeText(safeInspect(value));
  }
}

function sendFrame(message) {
  const body = Buffer.from(stringify(message), 'utf8');
  if (body.length > MAX_FRAME_BYTES) throw new Error(`frame of ${body.length} bytes exceeds the limit`);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  writeAll(control, Buffer.concat([header, body]));
}

function finishCell(cell, sentinel, done) {
  writeAll(1, sentinel);
  writeAll(2, sentinel);
  sendFrame({ type: 'done', ...done });
  if (current === cell) current = null;
}

async function runCell(code, sentinel) {
  const cell = { interrupted: false, failure: null, wake: null, sentinel, finished: false };
  current = cell;
  let status = 'ok';
  let result = '';
  try {
    const { script, wrapped } = compileCell(code);
    let value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    if (wrapped) {
      const completion = await waitFor(value);
      value = completion === undefined ? undefined : completion.value;
    }
    // An async function's or fetch()'s promise, as with top-level await.
    if (isPromise(value)) value = await waitFor(value);
    result = resultValue(value);
  } catch (e) {
    status = 'error';
    if (isInterrupt(e)) cell.interrupted = true;
    else if (e !== cell.failure) writeErr(describeThrown(e));
  }
  // Lets output queued by the cell (nextTick, resolved promises, unhandled
  // rejections) land in this cell rather than the next.
  await new Promise((resolve) => setImmediate(resolve));
  if (cell.interrupted) {
    status = 'error';
    result = '';
    writeErr('Script execution interrupted.');
  } else if (cell.failure) {
    status = 'error';
    result = '';
  }
  cell.finished = true;
  finishCell(cell, sentinel, { status, result, interrupted: cell.interrupted, exiting: false });
}

// An exception in a callback (a timer, an event) does not end the session,
// as in the REPL; during a cell it also fails the cell.
process.on('uncaughtException', (e) => {
  writeErr(describeThrown(e));
  if (current !== null && !current.failure) {
    current.failure = e;
    if (current.wake) current.wake();
  }
});
process.on('unhandledRejection', (reason) => {
  writeErr(describeThrown(reason));
});

// process.exit() in a cell ends the interpreter; the agent starts a fresh one.
process.on('exit', (code) => {
  const cell = current;
  if (cell === null || cell.finished || !controlOpen) return;
  cell.finished = true;
  try {
    finishCell(cell, cell.sentinel, {
      status: code ? 'error' : 'ok', result: '', interrupted: false, exiting: true,
    });
  } catch {
    // the agent sees the worker end
  }
});

// --- the control socket --------------------------------------------------------

function parseArgs(argv) {
  const args = {};
  for (let k = 0; k < argv.length; k++) {
    const match = /^--(control-fd|parent-pid)(?:=(.*))?$/.exec(argv[k]);
    if (match) args[match[1]] = Number(match[2] !== undefined ? match[2] : argv[++k]);
  }
  if (!Number.isInteger(args['control-fd']) || !Number.isInteger(args['parent-pid'])) {
    writeErr('usage: sessiond_worker.js --control-fd N --parent-pid P');
    realExit(2);
  }
  return args;
}

// node has no PR_SET_PDEATHSIG: without this a worker outlives a SIGKILLed
// agent. A cell stuck in a synchronous loop is noticed only when it returns.
function dieWithParent(parentPid) {
  const check = () => {
    let gone = false;
    try {
      // process.ppid is read once at startup; a reparented worker sees the
      // change here, even if the agent's pid was reused.
      const stat = fs.readFileSync('/proc/self/stat', 'latin1');
      gone = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== parentPid;
    } catch {
      try {
        process.kill(parentPid, 0);
      } catch (e) {
        gone = e.code === 'ESRCH';
      }
    }
    if (gone) realExit(1);
  };
  check();
  setInterval(check, PARENT_POLL_MS).unref();
}

// Runs a cell's machinery once, so the first cell is not slower than the rest
// and one-time warnings (Node 20's about its import() loader) are printed
// before the agent listens for output.
async function warmUp() {
  const warm = importModuleDynamically ? 'import("node:path")' : 'Promise.resolve(1)';
  await compile(warm, 'warm-up').runInThisContext({ breakOnSigint: true });
  safeInspect({ warm: [1, 'up'] });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  control = args['control-fd'];
  dieWithParent(args['parent-pid']);
  await warmUp();

  const socket = new net.Socket({ fd: control, readable: true, writable: false });
  const queue = [];
  let busy = false;
  let pending = Buffer.alloc(0);

  async function drain() {
    if (busy) return;
    busy = true;
    try {
      while (queue.length > 0) {
        const message = queue.shift();
        await runCell(String(message.code), String(message.sentinel));
      }
    } catch (e) {
      // The reply could not be sent: the agent replaces a worker that ends.
      writeErr(`sessiond worker: ${e && e.stack}`);
      realExit(1);
    }
    busy = false;
  }

  socket.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 4) {
      const length = pending.readUInt32BE(0);
      if (length > MAX_FRAME_BYTES) {
        writeErr(`sessiond worker: frame of ${length} bytes exceeds the limit`);
        realExit(2);
      }
      if (pending.length < 4 + length) break;
      const message = parseJson(pending.subarray(4, 4 + length).toString('utf8'));
      pending = pending.subarray(4 + length);
      if (message && message.type === 'execute') queue.push(message);
    }
    drain();
  });
  const stop = () => {
    controlOpen = false;
    realExit(0);
  };
  socket.on('end', stop);
  socket.on('close', stop);
  socket.on('error', stop);

  sendFrame({ type: 'ready', preloadErrors: [], runtime: { name: 'node', version: process.versions.node } });
}

main().catch((e) => {
  // Without "ready" the agent reports that the interpreter did not start.
  writeErr(`sessiond worker: cannot start: ${e && e.stack}`);
  realExit(1);
});
