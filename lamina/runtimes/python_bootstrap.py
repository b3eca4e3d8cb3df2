"""Lamina's built-in Python runtime client: runs a handler behind the Lambda Runtime API.

Runs inside an execution environment as a plain script, with the standard library only,
so that nothing of Lamina is importable by the function.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
import traceback
from typing import Any

API = "/2018-06-01/runtime"
# Below malloc's mmap threshold (128 KB): a read's buffer comes from the heap, not from an
# mmap, a page fault and an munmap per event. Larger events take more than one read.
READ_SIZE = 64 * 1024


class InitError(Exception):
    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class ClientContext:
    def __init__(self, document: dict[str, Any]) -> None:
        self.client = document.get("client")
        self.custom = document.get("custom")
        self.env = document.get("env")


class CognitoIdentity:
    def __init__(self, document: dict[str, Any]) -> None:
        self.cognito_identity_id = document.get("cognitoIdentityId")
        self.cognito_identity_pool_id = document.get("cognitoIdentityPoolId")


class LambdaContext:
    def __init__(self, headers: Headers) -> None:
        env = os.environ
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn", "")
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms", "0"))
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.tenant_id = headers.get("Lambda-Runtime-Aws-Tenant-Id")
        context = headers.get("Lambda-Runtime-Client-Context")
        self.client_context = ClientContext(json.loads(context)) if context else None
        identity = headers.get("Lambda-Runtime-Cognito-Identity")
        self.identity = CognitoIdentity(json.loads(identity)) if identity else None

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def load_handler(spec: str) -> Any:
    try:
        module_path, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}") from exc
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except SyntaxError as exc:
        raise InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
        ) from exc
    except Exception as exc:
        raise InitError(type(exc).__name__, str(exc), _trace(exc)) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return handler


def _trace(exc: BaseException) -> list[str]:
    return traceback.format_list(traceback.extract_tb(exc.__traceback__))


class Headers(dict[str, str]):
    """Response headers, by lower-cased name; `get` takes any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


def connect(host: str, port: int) -> socket.socket:
    """A TCP connection; a numeric address skips the resolver (its first use in a process
    loads the NSS modules and reads /etc: milliseconds of a cold start)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port))


class RuntimeClient:
    """HTTP/1.1 to the Runtime API over one kept-alive connection.

    After an invocation the answer and the next `GET /invocation/next` go out together
    (pipelined), so an invocation costs the runtime one write and one wait. Responses are
    read in order: the answer's 202, then the next event.
    """

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        self.host = address
        self.sock = connect(host, int(port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.unread = 0  # responses sent for and not read yet, before the next event's

    def _message(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        head = f"{method} {API}{path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        return (head + "\r\n").encode("latin-1") + body

    def _receive(self) -> None:
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise ConnectionError("the Runtime API closed the connection")
        self.buffer += data

    def _response(self) -> tuple[int, Headers, bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        self.buffer = self.buffer[end + 4 :]
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if len(self.buffer) < length:
            chunks, have = [self.buffer], len(self.buffer)
            while have < length:
                data = self.sock.recv(max(length - have, READ_SIZE))
                if not data:
                    raise ConnectionError("the Runtime API closed the connection")
                chunks.append(data)
                have += len(data)
            self.buffer = b"".join(chunks)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split(" ", 2)[1]), headers, body

    def next(self) -> tuple[Headers, bytes]:
        if self.unread == 0:
            self.sock.sendall(self._message("GET", "/invocation/next"))
            self.unread = 1
        while self.unread > 1:  # answers to what was posted before
            self._response()
            self.unread -= 1
        _, headers, payload = self._response()
        self.unread = 0
        return headers, payload

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Post and read the reply (init errors: nothing follows them)."""
        self.sock.sendall(self._message("POST", path, body, headers))
        self.unread += 1
        while self.unread:
            self._response()
            self.unread -= 1

    def answer(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Post an invocation's result and ask for the next event, in one write."""
        message = self._message("POST", path, body, headers)
        self.sock.sendall(message + self._message("GET", "/invocation/next"))
        self.unread += 2


def error_body(error_type: str, message: str, request_id: str, trace: list[str]) -> bytes:
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": trace,
        }
    ).encode()


class Current:
    """The invocation running now, for the log records written during it."""

    request_id = ""
    tenant_id: str | None = None
    execution_arn = ""  # the durable execution it runs, when it does


def json_record(created: float, level: str, message: str, logger: str) -> dict[str, Any]:
    """A log record as the log format JSON writes it: with the invocation's request id,
    in tenant isolation mode its tenant id, and when it runs a durable execution that
    execution's ARN (`durableExecutionArn`, so FilterLogEvents finds its lines)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    document: dict[str, Any] = {
        "timestamp": f"{stamp}.{int(created * 1000) % 1000:03d}Z",
        "level": level,
        "message": message,
        "logger": logger,
    }
    if Current.request_id:
        document["requestId"] = Current.request_id
    if Current.tenant_id is not None:
        document["tenantId"] = Current.tenant_id
    if Current.execution_arn:
        document["durableExecutionArn"] = Current.execution_arn
    return document


def configure_logging() -> None:
    """With `AWS_LAMBDA_LOG_FORMAT=JSON`, the logging module writes one JSON object per
    record (with the record's `extra` fields) to stdout, at `AWS_LAMBDA_LOG_LEVEL` and
    above (imported only then: a cold start of the text format does not pay for it)."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") != "JSON":
        return
    import logging

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            document = json_record(
                record.created, record.levelname, record.getMessage(), record.name
            )
            for key, value in vars(record).items():  # a record's `extra` fields
                if key not in RECORD_FIELDS and not key.startswith("_"):
                    document[key] = value
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                document["errorType"] = type(error).__name__
                document["errorMessage"] = str(error)
                document["stackTrace"] = _trace(error)
            return json.dumps(document, default=str)

    RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message"}
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper()
    root.setLevel(logging.DEBUG if level == "TRACE" else level)


def main() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    if sys.path and os.path.dirname(os.path.abspath(__file__)) == os.path.abspath(sys.path[0]):
        sys.path.pop(0)  # the runtime's own directory is not the function's business
    # As on AWS: the task root, then the layers' directories, before everything else.
    opt = os.environ.pop("_LAMINA_OPT", "/opt")  # a host directory without namespaces
    site = f"{opt}/python/lib/python3.{sys.version_info[1]}/site-packages"
    sys.path[0:0] = [task_root, site, opt + "/python"]
    sdk = os.environ.pop("_LAMINA_PYTHON_SDK", None)  # the runtime's, not the function's
    if sdk and sdk not in sys.path:
        sys.path.insert(3, sdk)  # boto3, as Lambda provides it: a bundled one comes first
    os.chdir(task_root)
    configure_logging()
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except InitError as exc:
        print(f"[ERROR] {exc.error_type}: {exc.message}", flush=True)
        client.post(
            "/init/error",
            error_body(exc.error_type, exc.message, "", exc.trace),
            {"Lambda-Runtime-Function-Error-Type": exc.error_type},
        )
        sys.exit(1)
    while True:
        headers, payload = client.next()
        context = LambdaContext(headers)
        request_id = context.aws_request_id
        Current.request_id, Current.tenant_id = request_id, context.tenant_id
        Current.execution_arn = ""
        os.environ["_X_AMZN_TRACE_ID"] = headers.get("Lambda-Runtime-Trace-Id", "")
        try:
            event = json.loads(payload) if payload else {}
            if isinstance(event, dict) and isinstance(event.get("DurableExecutionArn"), str):
                Current.execution_arn = event["DurableExecutionArn"]
            result = handler(event, context)
            try:
                body = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:
                raise InitError(
                    "Runtime.MarshalError", f"Unable to marshal response: {exc}"
                ) from exc
        except InitError as exc:
            client.answer(
                f"/invocation/{request_id}/error",
                error_body(exc.error_type, exc.message, request_id, []),
                {"Lambda-Runtime-Function-Error-Type": exc.error_type},
            )
            continue
        except Exception as exc:
            error_type = type(exc).__name__
            print(f"[ERROR] {error_type}: {exc}", flush=True)
            client.answer(
                f"/invocation/{request_id}/error",
                error_body(error_type, str(exc), request_id, _trace(exc)),
                {"Lambda-Runtime-Function-Error-Type": error_type},
            )
            continue
        sys.stdout.flush()
        client.answer(f"/invocation/{request_id}/response", body)


if __name__ == "__main__":
    main()
