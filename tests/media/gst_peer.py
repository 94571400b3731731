"""A WHIP/WHEP peer on GStreamer's webrtcbin: a second WebRTC stack for interop tests.

Run with Debian's /usr/bin/python3 (python3-gi binds the system Python, not the venv):

    /usr/bin/python3 tests/media/gst_peer.py publish URL TOKEN --codec vp8|h264 --seconds S
    /usr/bin/python3 tests/media/gst_peer.py play URL TOKEN --codec vp8|h264 --frames N

It behaves like OBS's WHIP output: the full offer after ICE gathering in one POST with
`Authorization: Bearer`, no trickle (never a PATCH), DELETE of the Location at the end.
webrtcbin keeps its default RSA DTLS certificate. It prints JSON lines on stdout:
{"event": "answered", "status": 201, "location": ..., "links": [...]}, then for `play`
{"event": "decoded", "frames": N} and for both {"event": "done", ...}; exit status 0 on success.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

# play: H.264 offered as constrained baseline and baseline, as browsers do (an aiortc publisher's
# first H.264 profile is baseline 42001f, and the server forwards what the publisher sends).
H264_RECEIVE_CAPS = "; ".join(
    f"application/x-rtp,media=video,encoding-name=H264,payload={pt},clock-rate=90000,"
    f"packetization-mode=(string)1,profile-level-id=(string){profile}"
    for pt, profile in ((102, "42e01f"), (104, "42001f"))
)
RTP_CAPS = {
    "vp8": "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
    "h264": "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
    "packetization-mode=(string)1",
}
ENCODE = {
    "vp8": "vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96",
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=800"
    " ! video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 config-interval=-1"
    " aggregate-mode=zero-latency",
}

DECODE = {"vp8": "rtpvp8depay ! vp8dec", "h264": "rtph264depay ! h264parse ! openh264dec"}


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.location: str | None = None
        self.frames = 0
        self.ok = False
        caps = RTP_CAPS[args.codec]
        if args.mode == "publish":
            desc = (
                "webrtcbin name=w bundle-policy=max-bundle videotestsrc is-live=true pattern=ball"
                f" ! video/x-raw,width=320,height=240,framerate=30/1 ! {ENCODE[args.codec]} ! {caps} ! w."
            )
            self.pipe = Gst.parse_launch(desc)
            self.webrtc = self.pipe.get_by_name("w")
        else:  # parse_launch of one element returns the element, not a pipeline
            self.pipe = Gst.Pipeline.new("play")
            self.webrtc = Gst.ElementFactory.make("webrtcbin", "w")
            self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
            self.pipe.add(self.webrtc)
        # libnice skips loopback interfaces; the tests' server is loopback-only. GStreamer 1.22's
        # "ice-agent" getter hands out webrtcbin's own reference (refcount stays 1), so the
        # wrapper is kept for the life of the process (and we leave with os._exit, below).
        self.ice = self.webrtc.get_property("ice-agent")
        agent = self.ice.get_property("agent")
        for address in args.local_address:
            nice_address = Nice.Address.new()
            nice_address.set_from_string(address)
            agent.add_local_address(nice_address)
        if args.mode == "play":
            direction = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
            receive = H264_RECEIVE_CAPS if args.codec == "h264" else caps
            self.webrtc.emit("add-transceiver", direction, Gst.Caps.from_string(receive))
            self.webrtc.connect("pad-added", self.on_pad_added)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.pipe.get_bus().add_signal_watch()
        self.pipe.get_bus().connect("message::error", self.on_error)

    def on_negotiation_needed(self, _webrtc: Gst.Element) -> None:
        self.webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(self.on_offer))

    def on_offer(self, promise: Gst.Promise) -> None:
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, None)

    def on_gathering(self, _webrtc: Gst.Element, _spec: object) -> None:
        if self.webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post_offer)

    def post_offer(self) -> bool:
        """One POST of the complete offer (no trickle), as OBS does."""
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        request = urllib.request.Request(
            self.args.url,
            data=offer.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.args.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                status, answer = reply.status, reply.read().decode()
                self.location = urllib.parse.urljoin(self.args.url, reply.headers["Location"])
                links = reply.headers.get_all("Link") or []
        except urllib.error.HTTPError as error:
            emit(event="answered", status=error.code, body=error.read().decode()[:500])
            self.loop.quit()
            return False
        except OSError as error:
            emit(event="answered", status=0, body=str(error))
            self.loop.quit()
            return False
        emit(event="answered", status=status, location=self.location, links=links)
        _, sdp = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", description, None)
        if self.args.mode == "publish":
            GLib.timeout_add(int(self.args.seconds * 1000), self.finish, True)
        return False

    def on_pad_added(self, _webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decode = Gst.parse_bin_from_description(
            f"queue ! {DECODE[self.args.codec]} ! fakesink name=sink signal-handoffs=true sync=false", True
        )
        self.pipe.add(decode)
        decode.get_by_name("sink").connect("handoff", self.on_decoded)
        decode.sync_state_with_parent()
        result = pad.link(decode.get_static_pad("sink"))
        emit(
            event="linked",
            pad=pad.get_name(),
            result=result.value_nick,
            caps=pad.get_current_caps().to_string(),
        )

    def on_decoded(self, *_: object) -> None:
        self.frames += 1
        if self.frames == self.args.frames:
            GLib.idle_add(self.finish, True)

    def on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, debug = message.parse_error()
        emit(event="error", message=str(error), debug=str(debug)[:500])
        self.finish(False)

    def finish(self, ok: bool) -> bool:
        self.ok = ok
        if self.args.mode == "play":
            emit(event="decoded", frames=self.frames)
        if self.location is not None:
            request = urllib.request.Request(
                self.location, method="DELETE", headers={"Authorization": f"Bearer {self.args.token}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    emit(event="deleted", status=reply.status)
            except urllib.error.HTTPError as error:
                emit(event="deleted", status=error.code)
        self.loop.quit()
        return False

    def run(self) -> int:
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int(self.args.timeout * 1000), self.finish, False)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        emit(event="done", ok=self.ok, frames=self.frames)
        return 0 if self.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("publish", "play"))
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--codec", choices=tuple(RTP_CAPS), default="vp8")
    parser.add_argument("--seconds", type=float, default=5.0, help="publish: how long")
    parser.add_argument("--frames", type=int, default=30, help="play: decoded frames to wait for")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--local-address", action="append", default=["127.0.0.1"])
    Gst.init(None)
    return Peer(parser.parse_args()).run()


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    os._exit(status)  # no finalizers: see the "ice-agent" note in Peer.__init__
