"""The wire contract in one place: op replies (``ops``), events (``events``), the
shapes they share (``wire``), the checks that hold the server to them
(``check``) and the generator of every artefact derived from them
(``generate``: docs/protocol.md's reference tables, the TypeScript declarations,
the Python SDK's typed methods, the OpenAPI document).

Op params schemas, roles and families stay in ``roomserver.handlers.REGISTRY``,
next to the handlers; ``registry.op_contracts()`` joins both.
"""
