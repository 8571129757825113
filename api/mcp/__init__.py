"""The MCP server: the service's jobs as Model Context Protocol tools, for agents.

Every tool is a caller of the public v1 HTTP API, with the agent's own bearer key, through
`ServiceClient` (`client.py`): so a tool passes the same doors as any other client (keys,
tenants, rate limits, validation, error codes) and needs nothing but an API to talk to.

- ``client``: the async HTTP client the tools speak through (in-process or over the network)
- ``schemas``: each tool's input schema, generated from the contract's request models
- ``following``: waiting on a job with progress notifications
- ``tools``: the tools themselves, one short function each
- ``server``: the MCP server (the SDK's low-level `Server`) over a `ServiceClient`
- ``http``: `/mcp` on the API (streamable HTTP, its key check and transport security)

It must not import torch, Redis or Milvus clients: `assetrag mcp` (stdio) runs it against a
remote API with only an URL and a key.
"""
