"""HTTP in front of functions, below the gateway: the request a browser or curl sent, the
events AWS builds from it (API Gateway's payload formats 1.0 and 2.0, which function URLs
share), the answers built from a function's response, CORS as AWS applies it, and the
prelude of a streamed HTTP response. Plain values and functions: control/ (function
URLs) and services/apigatewayv2 both use them; neither sees the gateway.
"""
