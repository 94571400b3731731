"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz.st_hooks): WHIP/WHEP bodies are
SDP text (offers) and SDP fragments (trickle ICE PATCH), sent as text is."""

import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
schemathesis.serializer.alias("application/trickle-ice-sdpfrag", "text/plain")
