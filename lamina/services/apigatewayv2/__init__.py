"""API Gateway HTTP APIs: the operations (provider.py), the rules of routes and stages
(apis.py), their records on disk (store.py), and requests to a deployed API (serve.py),
which reach Lambda through lamina/web/invoke.py's FunctionInvoker."""
