"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz.st_hooks): WHIP/WHEP bodies are
SDP text, sent as text is."""

import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
