"""MQTT 3.1.1 and 5.0 features against Bulwark's gateway, driven by the
third-party paho-mqtt client (PyPI, 2.x) over mutual TLS.

Usage: paho_features.py SCENARIO HOST PORT CAFILE CREDS_DIR
CREDS_DIR holds <device>.crt / <device>.key for devices d1, d2, d3, all in a
group whose attached policy allows publish/subscribe/receive on `lab/#`.
Each scenario prints `OK <scenario>` or fails with a traceback (exit 1).
"""

import os
import queue
import socket
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SCENARIO, HOST, PORT, CAFILE, CREDS = sys.argv[1:6]
PORT = int(PORT)
TIMEOUT = 10


class Dev:
    """A paho client for one device, with received messages in a queue."""

    def __init__(self, device, version=mqtt.MQTTv5, client_id=None, will=None,
                 clean=True, expiry=None, will_delay=None):
        self.version = version
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=device if client_id is None else client_id,
                             protocol=version,
                             clean_session=None if version == mqtt.MQTTv5 else clean)
        self.c.tls_set(ca_certs=CAFILE,
                       certfile=os.path.join(CREDS, device + ".crt"),
                       keyfile=os.path.join(CREDS, device + ".key"))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_connect = lambda c, u, f, rc, p: self.connacks.put((f, rc, p))
        if will is not None:
            props = None
            if will_delay is not None:
                props = Properties(PacketTypes.WILLMESSAGE)
                props.WillDelayInterval = will_delay
            self.c.will_set(will[0], will[1], qos=1, properties=props)
        kwargs = {}
        if version == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            if expiry is not None:
                props.SessionExpiryInterval = expiry
            kwargs = {"clean_start": clean, "properties": props}
        self.c.connect(HOST, PORT, keepalive=30, **kwargs)
        self.c.loop_start()
        flags, rc, props = self.connacks.get(timeout=TIMEOUT)
        assert not rc.is_failure, f"{device} refused: {rc}"
        self.session_present = flags.session_present
        self.connack_props = props

    def sub(self, topic, qos=1, **opts):
        done = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: done.put(codes)
        if self.version == mqtt.MQTTv5:
            options = mqtt.SubscribeOptions(qos=qos, **opts)
            self.c.subscribe(topic, options=options)
        else:
            self.c.subscribe(topic, qos)
        codes = done.get(timeout=TIMEOUT)
        assert all(not c.is_failure for c in codes), f"SUBACK {codes}"

    def pub(self, topic, payload, qos=1, retain=False, props=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def get(self, timeout=TIMEOUT):
        return self.messages.get(timeout=timeout)

    def none(self, wait=0.7):
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic}: {m.payload!r}")

    def drop(self):
        """Cuts the TCP connection without DISCONNECT (an abnormal end)."""
        self.c.loop_stop()
        sock = self.c.socket()
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def retained(version):
    d1, d2 = Dev("d1", version), Dev("d2", version)
    d1.pub("lab/retained", b"on", retain=True)
    d2.sub("lab/retained")
    m = d2.get()
    assert (m.topic, m.payload, m.retain) == ("lab/retained", b"on", True), (m.topic, m.payload, m.retain)
    # A live delivery of a retained publish is not flagged retained.
    d1.pub("lab/retained", b"off", retain=True)
    m = d2.get()
    assert (m.payload, m.retain) == (b"off", False)
    # An empty retained payload clears it.
    d1.pub("lab/retained", b"", retain=True)
    d2.get()
    d3 = Dev("d3", version)
    d3.sub("lab/retained")
    d3.none()


def qos2():
    d1, d2 = Dev("d1"), Dev("d2")
    d2.sub("lab/q2", qos=2)
    for i in range(20):
        d1.pub("lab/q2", str(i).encode(), qos=2)
    got = [d2.get() for _ in range(20)]
    assert [m.payload for m in got] == [str(i).encode() for i in range(20)]
    assert all(m.qos == 2 for m in got)
    d2.none()


def will():
    d2 = Dev("d2")
    d2.sub("lab/will")
    d1 = Dev("d1", will=("lab/will", b"d1 died"))
    d1.drop()
    m = d2.get()
    assert m.payload == b"d1 died"
    # A normal DISCONNECT discards the will.
    d1 = Dev("d1", will=("lab/will", b"again"))
    d1.close()
    d2.none()


def will_delay():
    d2 = Dev("d2")
    d2.sub("lab/will")
    # Delay 2 s, session expiry 60 s: the will comes after the delay...
    d1 = Dev("d1", will=("lab/will", b"late"), will_delay=2, expiry=60, clean=True)
    t = time.monotonic()
    d1.drop()
    m = d2.get()
    waited = time.monotonic() - t
    assert m.payload == b"late" and waited >= 1.8, waited
    # ...and not at all if the client comes back within it.
    d1 = Dev("d1", will=("lab/will", b"never"), will_delay=2, expiry=60, clean=True)
    d1.drop()
    d1 = Dev("d1", clean=False, expiry=60)
    d2.none(wait=3)


def shared():
    d1, d2, d3 = Dev("d1"), Dev("d2"), Dev("d3")
    d2.sub("$share/workers/lab/jobs")
    d3.sub("$share/workers/lab/jobs")
    for i in range(20):
        d1.pub("lab/jobs", str(i).encode())
    got2, got3 = [], []
    deadline = time.monotonic() + TIMEOUT
    while len(got2) + len(got3) < 20 and time.monotonic() < deadline:
        for d, into in ((d2, got2), (d3, got3)):
            try:
                into.append(d.get(timeout=0.1).payload)
            except queue.Empty:
                pass
    assert len(got2) + len(got3) == 20, (got2, got3)
    assert got2 and got3, "both members of the group get messages"
    assert sorted(got2 + got3, key=int) == [str(i).encode() for i in range(20)]


def topic_alias():
    d1, d2 = Dev("d1"), Dev("d2")
    assert d1.connack_props.TopicAliasMaximum >= 1
    d2.sub("lab/alias")
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 1
    d1.pub("lab/alias", b"first", props=props)
    d1.pub("", b"second", props=props)
    assert [d2.get().topic, d2.get().topic] == ["lab/alias", "lab/alias"]


def persistent_session(version):
    d2 = Dev("d2", version, clean=False, expiry=300)
    d2.sub("lab/p", qos=1)
    d2.close()
    d1 = Dev("d1", version)
    for i in range(5):
        d1.pub("lab/p", str(i).encode(), qos=1)
    d2 = Dev("d2", version, clean=False, expiry=300)
    assert d2.session_present
    assert [d2.get().payload for _ in range(5)] == [str(i).encode() for i in range(5)]


def restart_phase1():
    d2 = Dev("d2", clean=False, expiry=3600)
    d2.sub("lab/restart", qos=1)
    d2.close()
    d1 = Dev("d1")
    for i in range(5):
        d1.pub("lab/restart", str(i).encode(), qos=1)
    d1.pub("lab/restart-retained", b"kept", retain=True)


def restart_phase2():
    d2 = Dev("d2", clean=False, expiry=3600)
    assert d2.session_present, "session lost across the restart"
    assert [d2.get().payload for _ in range(5)] == [str(i).encode() for i in range(5)]
    d3 = Dev("d3")
    d3.sub("lab/restart-retained")
    assert d3.get().payload == b"kept"


SCENARIOS = {
    "retained-v5": lambda: retained(mqtt.MQTTv5),
    "retained-v311": lambda: retained(mqtt.MQTTv311),
    "qos2": qos2,
    "will": will,
    "will-delay": will_delay,
    "shared": shared,
    "topic-alias": topic_alias,
    "persistent-v5": lambda: persistent_session(mqtt.MQTTv5),
    "persistent-v311": lambda: persistent_session(mqtt.MQTTv311),
    "restart-phase1": restart_phase1,
    "restart-phase2": restart_phase2,
}

SCENARIOS[SCENARIO]()
print("OK", SCENARIO)
sys.stdout.flush()
os._exit(0)
