"""Drives Python paho-mqtt 1.6.1 for leafgate's interop tests (run with /usr/bin/python3).

argv[1] is a JSON plan; every step is printed to stdout as one JSON line:
  {"event": "started"}                                        with wait_before_connect
  {"event": "connack", "rc", "session_present", "props"}    after CONNACK
  {"event": "suback", "granted": [...]}                       after SUBACK
  {"event": "ready"}                                          connected and subscribed
  {"event": "msg", "mid", "topic", "payload", "qos", "retain", "dup", "props"}
  {"event": "published", "mid", "index"}                      PUBACK/PUBCOMP (or sent, QoS 0)
  {"event": "received_all"} / {"event": "timeout", "what"}    then exit
  {"event": "disconnected", "rc"}
  {"event": "written"}                    with report_writes: all queued packets (an
                                          acknowledgement, say) were written to the socket
Plan keys: port, protocol (4|5), client_id, clean (clean session / clean start),
connect_props, transport ("tcp"|"websockets"), will {topic,payload,qos,retain,props},
subscribe [[filter, qos], ...], publish [{topic,payload,qos,retain,props}],
expect (messages to wait for), stall_after (block paho's network thread in the callback
of that message, so it is never acknowledged), hold (after the plan, wait for a line on stdin),
timeout (seconds for each wait), disconnect ("clean" | "none"), wait_before_connect (print
{"event": "started"} and wait for a line on stdin before connecting: Python's start-up is
then done before the moment the test cares about), report_writes.
Props are a dict of paho property names; CorrelationData is given and printed as hex.
"""

import json
import queue
import sys
import threading

# This file is itself named paho.py: drop its own folder from the path so that
# `import paho` finds the library, not this script.
del sys.path[0]

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

plan = json.loads(sys.argv[1])
v5 = plan.get("protocol", 4) == 5
timeout = float(plan.get("timeout", 10))
lock = threading.Lock()


def emit(event, **fields):
    with lock:
        print(json.dumps({"event": event, **fields}), flush=True)


def to_props(packet_type, spec):
    if not v5 or not spec:
        return None
    props = Properties(packet_type)
    for name, value in spec.items():
        if name == "CorrelationData":
            value = bytes.fromhex(value)
        elif name == "UserProperty":
            value = [tuple(kv) for kv in value]
        setattr(props, name, value)
    return props


PROPERTY_NAMES = [
    "PayloadFormatIndicator", "MessageExpiryInterval", "ContentType", "ResponseTopic",
    "CorrelationData", "SubscriptionIdentifier", "SessionExpiryInterval",
    "AssignedClientIdentifier", "ServerKeepAlive", "ReceiveMaximum", "MaximumQoS",
    "RetainAvailable", "MaximumPacketSize", "TopicAliasMaximum", "TopicAlias",
    "WildcardSubscriptionAvailable", "SubscriptionIdentifierAvailable",
    "SharedSubscriptionAvailable", "ReasonString", "UserProperty",
]


def from_props(props):
    if props is None:
        return None
    out = {}
    for name in PROPERTY_NAMES:
        if hasattr(props, name):
            value = getattr(props, name)
            if isinstance(value, (bytes, bytearray)):
                value = value.hex()
            elif name == "UserProperty":
                value = [list(kv) for kv in value]
            out[name] = value
    return out


transport = plan.get("transport", "tcp")
client_id = plan.get("client_id", "")
if v5:
    client = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5, transport=transport)
else:
    client = mqtt.Client(
        client_id=client_id,
        clean_session=plan.get("clean", True),
        protocol=mqtt.MQTTv311,
        transport=transport,
    )
if transport == "websockets":
    client.ws_set_options(path="/mqtt")

connected = threading.Event()
subscribed = threading.Event()
all_received = threading.Event()
acked = {}
received = 0
connack_rc = [None]
expect = int(plan.get("expect", 0))


def on_connect(c, userdata, flags, rc, properties=None):
    connack_rc[0] = rc if isinstance(rc, int) else rc.value
    emit(
        "connack",
        rc=connack_rc[0],
        session_present=bool(flags.get("session present")),
        props=from_props(properties) if v5 else None,
    )
    connected.set()


def on_subscribe(c, userdata, mid, granted, properties=None):
    emit("suback", granted=[g if isinstance(g, int) else g.value for g in granted])
    subscribed.set()


def on_message(c, userdata, msg):
    global received
    emit(
        "msg",
        mid=msg.mid,
        topic=msg.topic,
        payload=msg.payload.decode("utf-8", "replace"),
        qos=msg.qos,
        retain=bool(msg.retain),
        dup=bool(msg.dup),
        props=from_props(msg.properties) if v5 else None,
    )
    received += 1
    if expect and received >= expect:
        all_received.set()
    if received == plan.get("stall_after"):
        # paho acknowledges after this callback returns: block the network thread so this
        # message (and whatever follows) stays unacknowledged until the process is killed.
        emit("stalled")
        threading.Event().wait(timeout)


def on_publish(c, userdata, mid):
    event = acked.setdefault(mid, threading.Event())
    event.set()


def on_disconnect(c, userdata, rc, properties=None):
    emit("disconnected", rc=rc if isinstance(rc, int) else rc.value)


def on_written(c, userdata, sock):
    emit("written")


if plan.get("report_writes"):
    # paho calls this from its network thread each time its queue of outgoing packets has
    # been written out (it acknowledges a QoS 1 message after on_message, in a later write).
    client.on_socket_unregister_write = on_written

client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.on_publish = on_publish
client.on_disconnect = on_disconnect

will = plan.get("will")
if will:
    client.will_set(
        will["topic"],
        will.get("payload", ""),
        qos=will.get("qos", 0),
        retain=will.get("retain", False),
        properties=to_props(PacketTypes.WILLMESSAGE, will.get("props")),
    )

stdin_lines = queue.Queue()


def read_stdin():
    for line in sys.stdin:
        stdin_lines.put(line)


if plan.get("hold") or plan.get("wait_before_connect"):
    threading.Thread(target=read_stdin, daemon=True).start()


def next_stdin_line():
    try:
        stdin_lines.get(timeout=timeout)
        return True
    except queue.Empty:
        return False


if plan.get("wait_before_connect"):
    emit("started")
    if not next_stdin_line():
        emit("timeout", what="stdin")
        sys.exit(1)

if v5:
    client.connect(
        "127.0.0.1",
        plan["port"],
        keepalive=plan.get("keepalive", 60),
        clean_start=plan.get("clean", True),
        properties=to_props(PacketTypes.CONNECT, plan.get("connect_props")),
    )
else:
    client.connect("127.0.0.1", plan["port"], keepalive=plan.get("keepalive", 60))
client.loop_start()


def finish(code):
    if plan.get("disconnect", "clean") == "clean":
        client.disconnect()
    client.loop_stop()
    sys.exit(code)


if not connected.wait(timeout):
    emit("timeout", what="connack")
    finish(1)
if connack_rc[0] != 0:
    client.loop_stop()
    sys.exit(2)

subscriptions = plan.get("subscribe", [])
if subscriptions:
    client.subscribe([(f, q) for f, q in subscriptions])
    if not subscribed.wait(timeout):
        emit("timeout", what="suback")
        finish(1)
emit("ready")

for index, m in enumerate(plan.get("publish", [])):
    info = client.publish(
        m["topic"],
        m.get("payload", ""),
        qos=m.get("qos", 0),
        retain=m.get("retain", False),
        properties=to_props(PacketTypes.PUBLISH, m.get("props")),
    )
    event = acked.setdefault(info.mid, threading.Event())
    if not event.wait(timeout):
        emit("timeout", what="publish %d" % index)
        finish(1)
    emit("published", mid=info.mid, index=index)

if expect:
    if not all_received.wait(timeout):
        emit("timeout", what="messages")
        finish(1)
    emit("received_all")

if plan.get("hold") and not next_stdin_line():
    emit("timeout", what="stdin")
    finish(1)

finish(0)
