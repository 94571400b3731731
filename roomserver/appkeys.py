"""The aiohttp application's keys: what ``server.create_app`` puts in the app for
the routes to find. A leaf of its own, so the routes need not import the module
that mounts them."""

from __future__ import annotations

from aiohttp import web

from roomserver.auth import TokenVerifier
from roomserver.behaviour_log import BehaviourRecorder
from roomserver.behaviour_writer import BehaviourWriter
from roomserver.config import Config
from roomserver.gateway import Gateway
from roomserver.node import Node
from roomserver.store.store import AnalyticsStore

NODE_KEY = web.AppKey("node", Node)
GATEWAY_KEY = web.AppKey("gateway", Gateway)
CONFIG_KEY = web.AppKey("config", Config)
VERIFIER_KEY = web.AppKey("verifier", TokenVerifier)
# The analytics store, open from startup to cleanup; absent with --no-analytics.
STORE_KEY = web.AppKey("store", AnalyticsStore)
# The behaviour log's recorder (ops → bus) and writer (bus → store), with the store.
RECORDER_KEY = web.AppKey("behaviour_recorder", BehaviourRecorder)
WRITER_KEY = web.AppKey("behaviour_writer", BehaviourWriter)
