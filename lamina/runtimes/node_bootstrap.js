// Lamina's Node.js runtime client: runs a handler behind the Lambda Runtime API.
//
// One file of CommonJS with Node's built-in modules only, loaded at every cold start: it
// speaks HTTP/1.1 to the Runtime API over one kept-alive socket (no `http` module, whose
// loading costs milliseconds), pipelines each answer with the next `GET /next`, and loads
// `stream` only for functions that stream. Handlers: CommonJS or ES modules (.js, .mjs,
// .cjs; a .js is an ES module when the nearest package.json says "type": "module"), async
// or callback style, `awslambda.streamifyResponse` (the Runtime API's streaming mode:
// a chunked body, errors in trailers). Errors, init errors and console lines as on AWS.
"use strict";

const net = require("net");
const fs = require("fs");
const path = require("path");
const util = require("util");

const API = "/2018-06-01/runtime";
const [HOST, PORT] = (process.env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001").split(":");
const TASK_ROOT = process.env.LAMBDA_TASK_ROOT || process.cwd();
const STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
const HIGH_WATER_MARK = Symbol.for("aws.lambda.runtime.handler.streaming.highWaterMark");

// Runtime API client ----------------------------------------------------------------------
class Client {
  constructor() {
    this.socket = net.connect(Number(PORT), HOST);
    this.socket.setNoDelay(true);
    this.buffer = null;
    this.waiting = []; // resolvers of responses, in request order
    this.socket.on("data", (data) => this.receive(data));
    this.socket.on("error", (error) => die(`Runtime API connection failed: ${error.message}`));
    this.socket.on("close", () => die("Runtime API connection closed"));
  }

  receive(data) {
    this.buffer = this.buffer ? Buffer.concat([this.buffer, data]) : data;
    while (this.buffer) {
      const end = this.buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = this.buffer.toString("latin1", 0, end).split("\r\n");
      const headers = {};
      for (let i = 1; i < lines.length; i++) {
        const colon = lines[i].indexOf(":");
        headers[lines[i].slice(0, colon).trim().toLowerCase()] = lines[i].slice(colon + 1).trim();
      }
      const length = Number(headers["content-length"] || 0);
      if (this.buffer.length < end + 4 + length) return;
      const body = this.buffer.subarray(end + 4, end + 4 + length);
      const rest = this.buffer.subarray(end + 4 + length);
      this.buffer = rest.length ? rest : null;
      const status = Number(lines[0].split(" ")[1]);
      const resolve = this.waiting.shift();
      if (resolve) resolve({ status, headers, body });
    }
  }

  request(method, url, body, headers) {
    let head = `${method} ${API}${url} HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\n`;
    for (const name in headers || {}) head += `${name}: ${headers[name]}\r\n`;
    const payload = body === undefined ? null : Buffer.from(body);
    head += payload ? `Content-Length: ${payload.length}\r\n\r\n` : "\r\n";
    return payload ? [Buffer.from(head, "latin1"), payload] : [Buffer.from(head, "latin1")];
  }

  // Send `parts` (requests) in one write; resolves with the responses, in order.
  send(...requests) {
    const promises = requests.map(() => new Promise((resolve) => this.waiting.push(resolve)));
    this.socket.ref();
    const parts = [].concat(...requests);
    this.socket.write(parts.length === 1 ? parts[0] : Buffer.concat(parts));
    return Promise.all(promises);
  }

  write(data) {
    this.socket.write(data);
  }

  idle() {
    this.socket.unref(); // while the handler runs, the socket keeps nothing alive
  }
}

function die(message) {
  log("undefined", "ERROR", message);
  process.exit(1);
}

// Logging ------------------------------------------------------------------------------------
let currentRequestId; // undefined outside an invocation, as AWS prints it

function log(requestId, level, message) {
  const line = `${new Date().toISOString()}\t${requestId}\t${level}\t${message}\n`;
  try {
    fs.writeSync(1, line);
  } catch (error) {
    if (error.code !== "EAGAIN") throw error;
    process.stdout.write(line);
  }
}

function patchConsole() {
  const levels = { log: "INFO", info: "INFO", warn: "WARN", error: "ERROR", debug: "DEBUG" };
  for (const method in levels) {
    console[method] = (...args) => log(currentRequestId, levels[method], util.format(...args));
  }
  console.trace = (...args) => {
    const error = new Error(util.format(...args));
    error.name = "Trace";
    log(currentRequestId, "TRACE", error.stack);
  };
}

// Errors -------------------------------------------------------------------------------------
function errorBody(error, type) {
  if (error instanceof Error) {
    const stack = typeof error.stack === "string" ? error.stack.split("\n") : [];
    return {
      errorType: type || error.name || "Error",
      errorMessage: error.message,
      trace: stack,
    };
  }
  let message;
  try {
    message = typeof error === "string" ? error : JSON.stringify(error);
  } catch (_) {
    message = String(error);
  }
  return { errorType: type || "string", errorMessage: message, trace: [] };
}

class UserError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.name = type;
    if (cause && cause.stack) this.stack = `${type}: ${message}\n${cause.stack.split("\n").slice(1).join("\n")}`;
  }
}

// Handler loading ----------------------------------------------------------------------------
function moduleType(file) {
  let directory = path.dirname(file);
  for (;;) {
    try {
      const manifest = JSON.parse(fs.readFileSync(path.join(directory, "package.json"), "utf8"));
      return manifest.type === "module" ? "module" : "commonjs";
    } catch (error) {
      if (error.code !== "ENOENT" && error.code !== "ENOTDIR") return "commonjs";
    }
    const parent = path.dirname(directory);
    if (parent === directory || directory === path.dirname(TASK_ROOT)) return "commonjs";
    directory = parent;
  }
}

async function loadModule(base) {
  const candidates = [".js", ".mjs", ".cjs"].map((ext) => base + ext);
  const file = candidates.find((candidate) => fs.existsSync(candidate));
  if (file === undefined) {
    // As Node would resolve it: a directory with index.js, or a package of NODE_PATH.
    try {
      return require(base);
    } catch (error) {
      if (error.code === "MODULE_NOT_FOUND" && String(error.message).includes(base)) {
        const name = path.relative(TASK_ROOT, base);
        throw new UserError("Runtime.ImportModuleError", `Error: Cannot find module '${name}'`, error);
      }
      throw wrapLoadError(error);
    }
  }
  const esm = file.endsWith(".mjs") || (file.endsWith(".js") && moduleType(file) === "module");
  try {
    if (esm) return await import("file://" + encodeURI(file).replace(/[?#]/g, encodeURIComponent));
    return require(file);
  } catch (error) {
    if (error && error.code === "ERR_REQUIRE_ESM") return import("file://" + encodeURI(file));
    throw wrapLoadError(error);
  }
}

function wrapLoadError(error) {
  if (error instanceof SyntaxError) {
    return new UserError("Runtime.UserCodeSyntaxError", `${error.name}: ${error.message}`, error);
  }
  if (error && (error.code === "MODULE_NOT_FOUND" || error.code === "ERR_MODULE_NOT_FOUND")) {
    return new UserError("Runtime.ImportModuleError", `Error: ${error.message.split("\n")[0]}`, error);
  }
  return error;
}

async function loadHandler(spec) {
  const slash = spec.lastIndexOf("/");
  const dot = spec.indexOf(".", slash + 1);
  if (dot <= slash + 1 || dot === spec.length - 1) {
    throw new UserError("Runtime.MalformedHandlerName", "Bad handler");
  }
  const moduleName = spec.slice(0, dot);
  const names = spec.slice(dot + 1).split(".");
  const loaded = await loadModule(path.resolve(TASK_ROOT, moduleName));
  let handler = loaded;
  for (const name of names) {
    handler = handler == null ? undefined : handler[name];
  }
  if (handler === undefined && loaded && loaded.default && typeof loaded.default === "object") {
    handler = names.reduce((found, name) => (found == null ? undefined : found[name]), loaded.default);
  }
  if (handler === undefined) {
    throw new UserError("Runtime.HandlerNotFound", `${path.basename(moduleName)}.${names.join(".")} is undefined or not exported`);
  }
  if (typeof handler !== "function") {
    throw new UserError("Runtime.HandlerNotFound", `${path.basename(moduleName)}.${names.join(".")} is not a function`);
  }
  return handler;
}

// awslambda ---------------------------------------------------------------------------------
class HttpResponseStream {
  static from(stream, prelude) {
    stream.setContentType("application/vnd.awslambda.http-integration-response");
    stream.write(JSON.stringify(prelude));
    stream.write(Buffer.alloc(8)); // the prelude's delimiter
    return stream;
  }
}

globalThis.awslambda = {
  streamifyResponse(handler, options) {
    handler[STREAMING] = "response";
    if (options && options.highWaterMark) handler[HIGH_WATER_MARK] = options.highWaterMark;
    return handler;
  },
  HttpResponseStream,
};

// Invocations ------------------------------------------------------------------------------
function makeContext(headers, settle) {
  const env = process.env;
  const deadline = Number(headers["lambda-runtime-deadline-ms"] || 0);
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
    done: (error, result) => settle(error, result),
    succeed: (result) => settle(null, result),
    fail: (error) => settle(error || "handled"),
  };
  if (headers["lambda-runtime-client-context"]) {
    context.clientContext = JSON.parse(headers["lambda-runtime-client-context"]);
  }
  if (headers["lambda-runtime-cognito-identity"]) {
    context.identity = JSON.parse(headers["lambda-runtime-cognito-identity"]);
  }
  return context;
}

let client;
let handler;
let answered = null; // the current invocation's answer function (for uncaught errors)
let exiting = false; // an uncaught error: answer, then exit without asking for more

function answerRequests(requestId, error, result) {
  if (error !== null && error !== undefined) {
    const body = JSON.stringify(errorBody(error));
    return client.request("POST", `/invocation/${requestId}/error`, body, {
      "Content-Type": "application/json",
      "Lambda-Runtime-Function-Error-Type": JSON.parse(body).errorType,
    });
  }
  let body;
  try {
    body = result === undefined ? "null" : JSON.stringify(result);
  } catch (failure) {
    return answerRequests(requestId, failure);
  }
  if (body === undefined) body = "null";
  return client.request("POST", `/invocation/${requestId}/response`, body, {
    "Content-Type": "application/json",
  });
}

// Streaming: the response goes out as the handler writes it, chunked; an error after the
// first byte goes in the trailers.
function streamingInvocation(requestId, event, context) {
  const { Writable } = require("stream");
  let started = false;
  let contentType = "application/octet-stream";
  const start = () => {
    if (started) return;
    started = true;
    client.waiting.push(() => {}); // the streamed POST's own answer (202) comes first
    client.write(
      Buffer.from(
        `POST ${API}/invocation/${requestId}/response HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\n` +
          "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n" +
          `Content-Type: ${contentType}\r\n` +
          "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n",
        "latin1",
      ),
    );
  };
  const chunk = (data) => {
    if (data.length === 0) return;
    client.write(Buffer.concat([Buffer.from(data.length.toString(16) + "\r\n"), data, Buffer.from("\r\n")]));
  };
  const stream = new Writable({
    highWaterMark: handler[HIGH_WATER_MARK] || 16384,
    write(data, encoding, done) {
      start();
      chunk(Buffer.isBuffer(data) ? data : Buffer.from(data, encoding));
      done();
    },
    final(done) {
      done();
    },
  });
  stream.setContentType = (type) => {
    if (started) throw new Error("Cannot set content-type, the response has started.");
    contentType = type;
  };
  return new Promise((resolve) => {
    let settled = false;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      start();
      let trailers = "";
      if (error !== null && error !== undefined) {
        const body = errorBody(error);
        log(requestId, "ERROR", `Invoke Error \t${JSON.stringify(body)}`);
        trailers =
          `Lambda-Runtime-Function-Error-Type: ${body.errorType}\r\n` +
          `Lambda-Runtime-Function-Error-Body: ${Buffer.from(JSON.stringify(body)).toString("base64")}\r\n`;
      }
      client.write(Buffer.from(`0\r\n${trailers}\r\n`, "latin1"));
      resolve(null);
    };
    answered = (error) => finish(error);
    stream.on("finish", () => finish(null));
    stream.on("error", (error) => finish(error));
    let returned;
    try {
      returned = handler(event, stream, context);
    } catch (error) {
      finish(error);
      return;
    }
    if (returned && typeof returned.then === "function") {
      returned.then(
        () => {
          if (!stream.writableFinished) stream.end();
        },
        (error) => finish(error),
      );
    }
  });
}

function runInvocation(headers, body) {
  const requestId = headers["lambda-runtime-aws-request-id"];
  currentRequestId = requestId;
  if (headers["lambda-runtime-trace-id"]) process.env._X_AMZN_TRACE_ID = headers["lambda-runtime-trace-id"];
  else delete process.env._X_AMZN_TRACE_ID;
  let event;
  try {
    event = JSON.parse(body.toString("utf8"));
  } catch (error) {
    return Promise.resolve(answerRequests(requestId, error));
  }
  return new Promise((resolve) => {
    let done = false;
    const settle = (error, result) => {
      if (done) return;
      done = true;
      if (error !== null && error !== undefined) {
        const shown = errorBody(error);
        log(requestId, "ERROR", `Invoke Error \t${JSON.stringify({ errorType: shown.errorType, errorMessage: shown.errorMessage, stack: shown.trace })}`);
      }
      resolve(answerRequests(requestId, error, result));
    };
    const context = makeContext(headers, (error, result) => settle(error, result));
    answered = (error) => settle(error);
    if (handler[STREAMING] === "response") {
      streamingInvocation(requestId, event, context).then(resolve);
      return;
    }
    const callback = (error, result) => {
      if (context.callbackWaitsForEmptyEventLoop) {
        // As on AWS: the answer leaves once nothing else is pending.
        process.once("beforeExit", () => settle(error, result));
      } else {
        settle(error, result);
      }
    };
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (error) {
      settle(error);
      return;
    }
    if (returned && typeof returned.then === "function") {
      returned.then((result) => settle(null, result), (error) => settle(error === undefined ? "undefined" : error));
    } else {
      // Neither a promise nor (yet) the callback: as on AWS, the answer is null once the
      // event loop is empty, unless the callback was called by then.
      process.once("beforeExit", () => setImmediate(() => settle(null, undefined)));
    }
  });
}

async function loop() {
  let [next] = await client.send(client.request("GET", "/invocation/next"));
  for (;;) {
    client.idle();
    const answer = await runInvocation(next.headers, next.body);
    answered = null;
    currentRequestId = undefined;
    if (exiting) {
      // No GET /next: asking for an event would get this environment frozen (between
      // invocations) before it exits.
      if (answer) await client.send(answer);
      await new Promise(() => {});
    }
    const requests = answer ? [answer, client.request("GET", "/invocation/next")] : [client.request("GET", "/invocation/next")];
    const responses = await client.send(...requests);
    next = responses[responses.length - 1];
  }
}

function uncaught(error, type) {
  if (answered !== null) {
    const shown = errorBody(error, type);
    log(currentRequestId, "ERROR", `${type === undefined ? "Uncaught Exception" : "Unhandled Promise Rejection"} \t${JSON.stringify({ errorType: shown.errorType, errorMessage: shown.errorMessage, stack: shown.trace })}`);
    const answer = answered;
    answered = null;
    exiting = true;
    answer(type ? new UserError(type, shown.errorMessage, error instanceof Error ? error : undefined) : error);
    setImmediate(() => process.exit(129));
    return;
  }
  log(currentRequestId, "ERROR", `Uncaught Exception \t${JSON.stringify(errorBody(error))}`);
  process.exit(129);
}

async function main() {
  patchConsole();
  client = new Client();
  process.on("uncaughtException", (error) => uncaught(error));
  process.on("unhandledRejection", (reason) => {
    const error = reason instanceof Error ? reason : new Error(String(reason));
    uncaught(error, "Runtime.UnhandledPromiseRejection");
  });
  try {
    handler = await loadHandler(process.env._HANDLER || "");
  } catch (error) {
    const body = errorBody(error);
    log(undefined, "ERROR", `Uncaught Exception \t${JSON.stringify({ errorType: body.errorType, errorMessage: body.errorMessage, stack: body.trace })}`);
    await client.send(
      client.request("POST", "/init/error", JSON.stringify(body), {
        "Content-Type": "application/json",
        "Lambda-Runtime-Function-Error-Type": body.errorType,
      }),
    );
    process.exit(129);
  }
  await loop();
}

main();
