"""Media: a selective forwarding unit on aiortc (no transcoding), WHIP/WHEP, media workers.

Public entry points: `MediaRouter` (sfu.py), `media_routes` (whip.py), `MediaWorkerPool`
(workers.py). See forwarding.py for how frames are forwarded and which aiortc internals that uses.
"""
