"""The room assistant (issue 18): answers shoppers' questions from the barrage.

Pure parts, no I/O: ``text`` (normalising, tokens, question detection),
``catalog`` (product knowledge: products, attributes, FAQ, versions),
``intents`` (what can be asked about a product, built-in zh/en phrasings),
``retrieval`` (hybrid BM25 + optional embeddings ranking), ``facts`` (live
facts from the room's state), ``answer`` (the decision and the answer text),
``cluster`` (the host's "观众在问" view).

At the edges: ``embed`` loads the optional embedding model, ``service`` is the
per-node worker that consumes accepted barrage off the hot path and publishes
answers, ``api`` the REST routes. ``create_app`` hands the service to the node
(``node.assistant``); ``node.py`` never imports this package.
"""
